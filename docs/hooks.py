"""Build hook: the result files and configs of ``benchmarks/`` are part of the site (figures link to them), so
the pages never hold copies of them."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

SHARED = ("benchmarks/results", "benchmarks/configs")


def on_files(files, config):
    root = Path(config["config_file_path"]).parent
    for folder in SHARED:
        for path in sorted((root / folder).glob("*")):
            if path.suffix in {".png", ".json", ".csv"} and path.is_file():
                files.append(File(str(path.relative_to(root)), str(root), config["site_dir"],
                                  config["use_directory_urls"]))
    return files
