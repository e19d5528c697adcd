"""The PNG of bench/conversation.py: per-turn latency breakdown and p50/p95 of each phase."""

from __future__ import annotations

from pathlib import Path

PARTS = (("end_of_turn_ms", "end-of-turn delay", "#8da0cb"), ("llm_ttft_ms", "LLM first token", "#fc8d62"),
         ("tts_ttfb_ms", "TTS first audio", "#66c2a5"))
SUMMARY = (("voice_to_voice_ms", "voice to voice"), ("end_of_turn_ms", "end of turn"), ("stt_final_ms", "STT final"),
           ("llm_ttft_ms", "LLM TTFT"), ("tts_ttfb_ms", "TTS TTFB"))


def save_plot(report: dict, path: Path) -> Path:
    """Draw ``report`` (the bench's JSON) to ``path``: stacked parts per turn, voice to voice on top, and p50/p95."""
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    phases = [("mesh", "mesh"), ("in-process", "in process")]
    turns = {mode: [t for t in report["per_turn"] if t["mode"] == mode and not t["error"]] for mode, _ in phases}
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5), gridspec_kw={"width_ratios": [3, 3, 2]})
    for ax, (mode, title) in zip(axes[:2], phases, strict=True):
        rows = turns[mode]
        x = range(1, len(rows) + 1)
        bottom = [0.0] * len(rows)
        for key, label, color in PARTS:
            values = [t[key] for t in rows]
            ax.bar(x, values, bottom=bottom, color=color, label=label, width=0.7)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.plot(list(x), [t["voice_to_voice_ms"] for t in rows], "k_", markersize=18, mew=2.5,
                label="voice to voice (client)")
        ax.set_title(f"{title}: per turn (parts stack; a bar above the mark means they overlapped)", fontsize=9)
        ax.set_xlabel("turn")
        ax.set_ylabel("ms")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    ax = axes[2]
    width = 0.2
    for i, (phase, label) in enumerate((("mesh", "mesh"), ("in_process", "in process"))):
        stats = report.get(phase, {})
        for j, (quantile, hatch) in enumerate((("p50", ""), ("p95", "//"))):
            values = [stats.get(key, {}).get(quantile, 0.0) for key, _ in SUMMARY]
            offset = (i * 2 + j - 1.5) * width
            ax.bar([k + offset for k in range(len(SUMMARY))], values, width, hatch=hatch,
                   color=("#1f77b4", "#ff7f0e")[i], alpha=0.85 if j == 0 else 0.5, label=f"{label} {quantile}")
    for target, style in ((450, "--"), (700, ":")):
        ax.axhline(target, color="red", linestyle=style, linewidth=1, label=f"target {target} ms")
    ax.set_xticks(range(len(SUMMARY)), [label for _, label in SUMMARY], rotation=30, ha="right", fontsize=8)
    ratio = report.get("ratio_mesh_to_in_process", {})
    ax.set_title(f"p50 / p95 (mesh / in-process v2v p50 {ratio.get('p50', 0):.2f}, p95 {ratio.get('p95', 0):.2f})",
                 fontsize=9)
    ax.set_ylabel("ms")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    load = report.get("load_average", {})
    fig.suptitle(f"VoiceMesh voice-to-voice latency, {report.get('when', '')}, "
                 f"load {load.get('start', 0):.1f}->{load.get('end', 0):.1f} on {report['machine']['cpus']} CPUs",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
