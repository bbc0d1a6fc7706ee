"""``waveletflow info``: a run's model, sizes, parameters and training state per level, or a preset's model."""

from __future__ import annotations

import json
from pathlib import Path

from waveletflow.errors import UserInputError
from waveletflow.rundir import RunDir


def cmd_info(a) -> int:
    from waveletflow.models import build_model, load, mrcnf_config, waveletflow_config
    from waveletflow.models.config import MRCNF_PRESETS, PRESET_SOURCES, PRESETS

    if a.channels not in (1, 3) or (a.image_size is not None and a.image_size < 2):
        raise UserInputError("--channels must be 1 or 3 and --image-size at least 2")
    source = None
    if a.run in PRESETS and not Path(a.run).exists():  # a preset's model, before any training
        side = int(a.run.split("x")[0])
        model = build_model("waveletflow", waveletflow_config((a.channels, side, side), 8, preset=a.run))
        run, source = None, PRESET_SOURCES.get(a.run)
    elif a.run in MRCNF_PRESETS and not Path(a.run).exists():
        side = a.image_size or 32
        model = build_model("mrcnf", mrcnf_config((a.channels, side, side), 8, preset=a.run))
        run = None
    else:
        model = load(a.run, allow_untrained=True)
        run = RunDir(a.run)
    info = model.describe()
    if source:
        info["source"] = source
    if run is not None:
        try:
            saved = run.read_run()
        except UserInputError:  # a corrupt run.json: the model is still described
            saved = {}
        info.update({k: saved[k] for k in ("capacity", "training") if isinstance(saved.get(k), dict)})
    for lv in info["levels"] if run is not None else []:
        try:
            state = run.read_state(lv["level"])
        except UserInputError as exc:
            state = str(exc)
        lv["trained"] = run.has_weights(lv["level"])
        if state is not None:
            lv["state"] = state
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    c, h, w = info["image_shape"]
    print(f"{info['model_type']} model for {h}x{w}x{c} images, {info['n_bits']} bits, {info['parameters']:,} parameters")
    conv = getattr(model, "convention", None)
    if conv:
        wavelet = getattr(model, "wavelet", "haar")
        how = "Haar" if wavelet == "haar" else f"by lifting, {getattr(model, 'boundary', 'symmetric')} boundary"
        print(f"wavelet: {wavelet} ({how}), {conv} normalisation")
    if info.get("noise_std"):
        print(f"noise: a model of the images plus Gaussian noise of std {info['noise_std']:g} (its bits/dim are those "
              "of the noisy images; sample --denoise takes samples back)")
    if source:
        print(f"preset {a.run}: {source}")
    try:
        prepared = run.data_options() if run is not None else {}
    except UserInputError:  # a corrupt run.json: the model is still described
        prepared = {}
    if prepared:
        how = {"image_size": "resized to {v}x{v}", "crop": "{v}x{v} crops (random in training, centred in evaluation)"}
        print("images: " + ", ".join(how[k].format(v=v) for k, v in prepared.items()))
    for line in _training_lines(info):
        print(line)
    for lv in info["levels"]:
        text = _state_text(lv) if run is not None else (
            "whole images" if lv.get("crop") is None else f"trains on {lv['crop']}x{lv['crop']} crops")
        context = f", {lv['context']} context" if lv.get("context") not in (None, "none") else ""
        print(f"  level {lv['level']} ({lv['name']}): {lv['dims']} dims, {lv['parameters']:,} parameters{context}; "
              f"{text}")
    return 0


def _training_lines(info: dict) -> list[str]:
    """How the run's model was sized and how its last ``train`` command trained, for ``info``."""
    from waveletflow.models.capacity import CapacityChoice

    lines = []
    cap = info.get("capacity")
    if cap:
        try:
            choice = CapacityChoice(info["model_type"], str(cap["size"]), float(cap["budget_s"]), int(cap["width"]),
                                    None if cap.get("level") is None else int(cap["level"]))
            lines.append(f"capacity: {choice.describe()}")
        except (KeyError, TypeError, ValueError):
            lines.append("capacity: (unreadable record in run.json)")
    t = info.get("training")
    if t:
        try:
            groups = "; ".join(",".join(map(str, g)) for g in t["groups"])
            limit = f"{t['time_budget']:g} s" if t.get("time_budget") is not None else f"{t['steps']} steps"
            lines.append(f"last trained: {t['workers']} process{'es' if t['workers'] > 1 else ''} (levels {groups}; "
                         f"threads {', '.join(map(str, t['threads']))}) on {t['device']}, precision "
                         f"{t['precision']}, batch {t['batch_size']}{', compiled steps' if t.get('compile') else ''}, "
                         f"{limit}")
        except (KeyError, TypeError, ValueError):
            lines.append("last trained: (unreadable record in run.json)")
    return lines


def _state_text(lv: dict) -> str:
    st = lv.get("state")
    if isinstance(st, str):
        return st  # a corrupt state.json, said as it is
    if not lv["trained"]:  # state.json may remain when the weights were removed: it describes nothing now
        return "not trained" + (f" (no weights; state.json left from step {st['step']})"
                                if isinstance(st, dict) and "step" in st else "")
    if not isinstance(st, dict) or "step" not in st:
        return "trained (no state.json)"
    val = st.get("val_bpd")
    text = f"step {st['step']}, {st.get('elapsed_s', 0):.0f} s" + (f", validation {val:.4f} bits/dim" if val is not None else "")
    if st.get("best_step") is not None and st.get("best_step") != st.get("step"):
        text += f" (kept: the best validation, at step {st['best_step']})"
    if len(RunDir.unit_levels(str(st.get("unit", ""))) or []) > 1:
        text += f" (trained in {st['unit']})"
    return text + ("" if lv.get("crop") is None else f"; trains on {lv['crop']}x{lv['crop']} crops")
