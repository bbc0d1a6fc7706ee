from waveletflow.cli import main

if __name__ == "__main__":  # not when a level worker (spawn) imports this module again
    raise SystemExit(main())
