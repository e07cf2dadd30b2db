"""Turn results.json into results.md and PNG plots (python benchmarks/report.py [--quick])."""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import stamp  # noqa: E402 - after the path insert

RESULTS = stamp.RESULTS


def _fmt(v, spec=".2f", none="–"):
    return none if v is None else format(v, spec)


def _ratio(a, b):
    return None if not a or not b else a / b


def _get(rows, **match):
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def cutout_table(rows: list[dict]) -> tuple[list[str], list[dict]]:
    """Markdown lines and headline records (one per latency/cube/size)."""
    lines = ["| latency | cube (frames) | size | tool | cold s | warm s | x vs cubecut (cold/warm) | requests cold/warm | "
             "bytes / min | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    heads = []
    keys = sorted({(r["latency"], r["cube"], r["size"]) for r in rows}, key=lambda k: (k[0] != "0 ms", k[1], k[2]))
    for lat, cube, size in keys:
        ref = _get(rows, latency=lat, cube=cube, size=size, tool="cubecut auto")
        rc, rw = (ref or {}).get("cold") or {}, (ref or {}).get("warm") or {}
        head = {"latency": lat, "cube": cube, "size": size, "nt": (ref or {}).get("nt")}
        for tool in ("cubecut auto", "cubecut 1", "astrocut auto", "tesscube"):
            r = _get(rows, latency=lat, cube=cube, size=size, tool=tool)
            if r is None:
                continue
            c, w = r.get("cold") or {}, r.get("warm") or {}
            xc = _ratio(c.get("wall_s"), rc.get("wall_s"))
            xw = _ratio(w.get("wall_s"), rw.get("wall_s"))
            nbytes = c.get("proxy_bytes")
            over = _ratio(nbytes, r.get("min_bytes"))
            if not r.get("ok"):
                lines.append(f"| {lat} | {cube} ({r['nt']}) | {size} | {tool} | error: {str(r.get('error'))[:60]} |||||")
                continue
            lines.append(f"| {lat} | {cube} ({r['nt']}) | {size}x{size} | {tool} | {_fmt(c.get('wall_s'), '.3f')} | "
                         f"{_fmt(w.get('wall_s'), '.3f')} | {_fmt(xc, '.1f')} / {_fmt(xw, '.1f')} | "
                         f"{_fmt(c.get('proxy_requests'), 'd')} / {_fmt(w.get('proxy_requests'), 'd')} | "
                         f"{_fmt(over, '.3f')} | {_fmt(r.get('peak_rss_mb'), '.0f')} |")
            head[tool] = {"cold": c.get("wall_s"), "warm": w.get("wall_s"), "x_cold": xc, "x_warm": xw,
                          "bytes_over_min": over, "req_cold": c.get("proxy_requests"),
                          "req_warm": w.get("proxy_requests"), "rss": r.get("peak_rss_mb")}
        heads.append(head)
    return lines, heads


def targets(data: dict, heads: list[dict]) -> list[str]:
    out = ["| target | measured | met |", "|---|---|---|"]
    agg = data.get("_headline_agg")
    if agg and agg.get("cubecut auto") and agg.get("astrocut auto"):
        c, a, t = agg["cubecut auto"], agg["astrocut auto"], agg.get("tesscube", {})
        xa = _ratio(a["cold"], c["cold"])
        out.append(f"| repeated headline (interleaved rounds): ≥5x vs astrocut | {_fmt(xa, '.1f')}x cold, "
                   f"{_fmt(_ratio(a['warm'], c['warm']), '.1f')}x warm-vs-warm, "
                   f"{_fmt(_ratio(a['cold'], c['warm']), '.1f')}x astrocut-cold-vs-cubecut-warm | {'yes' if xa and xa >= 5 else 'NO'} |")
        xt = _ratio(t.get("cold"), c["cold"])
        out.append(f"| repeated headline: ≥2x vs tesscube | {_fmt(xt, '.1f')}x cold, "
                   f"{_fmt(_ratio(t.get('warm'), c['warm']), '.1f')}x warm | {'yes' if xt and xt >= 2 else 'NO'} |")
    real = [h for h in heads if h["latency"] != "0 ms" and h["cube"] == "s0001" and h["size"] == 30]
    if real:
        h = real[0]
        a, t, c = h.get("astrocut auto", {}), h.get("tesscube", {}), h.get("cubecut auto", {})
        xa = a.get("x_cold")
        xt = t.get("x_cold")
        xtw = t.get("x_warm")
        out.append(f"| 30x30, 1,000 frames, {h['latency']}: ≥5x faster than astrocut threads=auto | "
                   f"{_fmt(xa, '.1f')}x cold (both read metadata), {_fmt(a.get('x_warm'), '.1f')}x warm | "
                   f"{'yes' if xa and xa >= 5 else 'NO'} |")
        out.append(f"| same: ≥2x faster than tesscube | {_fmt(xt, '.1f')}x cold, {_fmt(xtw, '.1f')}x warm | "
                   f"{'yes' if xt and xt >= 2 and (xtw or 0) >= 2 else 'NO' if not xt or xt < 2 else 'cold only'} |")
        out.append(f"| bytes ≤ 1.05x minimum | {_fmt(c.get('bytes_over_min'), '.4f')}x (cold, incl. index GET) | "
                   f"{'yes' if c.get('bytes_over_min') and c['bytes_over_min'] <= 1.05 else 'NO'} |")
        nrows = None
        for r in data.get("cutout", []):
            if r["tool"] == "cubecut auto" and r["size"] == 30 and r["cube"] == "s0001" and r["latency"] == h["latency"]:
                nrows = r["min_bytes"] // (30 * r["nt"] * 8)
        out.append(f"| warm requests make no metadata reads | warm {c.get('req_warm')} requests for {nrows} rows | "
                   f"{'yes' if c.get('req_warm') == nrows else 'NO'} |")
    ing = data.get("ingest") or {}
    runs = ing.get("runs", [])
    cc = [r for r in runs if r["label"].startswith("cubecut local") and r.get("ok")]
    ac = [r for r in runs if r["label"].startswith("astrocut") and r.get("ok")]
    if cc and ac:
        best_c = max(cc, key=lambda r: r["cube_mb_s"])
        eq = min(ac, key=lambda r: r.get("max_memory_gb") or 99)
        out.append(f"| ingest ≥ astrocut throughput at equal memory | cubecut {best_c['cube_mb_s']:.0f} MB/s at "
                   f"{best_c['peak_rss_mb']:.0f} MB vs astrocut {eq['cube_mb_s']:.0f} MB/s at max_memory="
                   f"{eq.get('max_memory_gb')} GB ({eq['peak_rss_mb']:.0f} MB) | "
                   f"{'yes' if best_c['cube_mb_s'] >= eq['cube_mb_s'] else 'NO'} |")
    bws = [b for b in ing.get("block_worker", []) if b.get("ok")]
    if bws:
        desc = ", ".join(f"{b['block_mb']} MiB block: +{b['peak_rss_mb'] - b['rss_before_block_mb']:.0f} MB"
                         for b in bws)
        ok = all(b["peak_rss_mb"] - b["rss_before_block_mb"] <= 3 * b["block_mb"] for b in bws)
        out.append(f"| per-worker memory bounded by block size | {desc} (over the process baseline) | "
                   f"{'yes (≤3x block)' if ok else 'NO'} |")
    model = data.get("model") or {}
    sec = [s for s in model.get("sectors", []) if s["sector"] == "30-min sector" and s["concurrency"] == 200]
    if sec:
        d64 = [s for s in sec if s["block_rows"] == min(x["block_rows"] for x in sec)]
        best1 = min((s for s in sec if s["prefixes"] == 1), key=lambda s: s["wall_s"])
        s27 = min((s for s in d64 if s["prefixes"] == 27), key=lambda s: s["wall_s"])
        s1 = min((s for s in d64 if s["prefixes"] == 1), key=lambda s: s["wall_s"])
        out.append(f"| sector model < 2 min at ~200 workers (45 GB, 1,300 FFIs) | 64 MiB blocks: {s27['wall_min']:.1f} min "
                   f"(FFIs over 27 prefixes), {s1['wall_min']:.1f} min (1 prefix, GET-rate bound); "
                   f"{best1['block_mib']:.0f} MiB blocks, 1 prefix: {best1['wall_min']:.1f} min | "
                   f"{'yes' if min(s27['wall_min'], best1['wall_min']) < 2 else 'NO'} (see model) |")
    return out


def plots(data: dict, heads: list[dict], outdir: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    # 1. cutout wall time by size, per latency (s0001)
    lats = sorted({h["latency"] for h in heads}, key=lambda s: s != "0 ms")
    fig, axes = plt.subplots(1, len(lats), figsize=(5 * len(lats), 3.6), squeeze=False)
    for ax, lat in zip(axes[0], lats):
        hs = [h for h in heads if h["latency"] == lat and h["cube"] == "s0001"]
        sizes = [h["size"] for h in hs]
        for tool, style in (("cubecut auto", "o-"), ("cubecut 1", "o--"), ("astrocut auto", "s-"), ("tesscube", "^-")):
            ys = [(h.get(tool) or {}).get("cold") for h in hs]
            if any(ys):
                ax.plot(sizes, ys, style, label=f"{tool} (cold)")
        ys = [(hs_.get("cubecut auto") or {}).get("warm") for hs_ in hs]
        ax.plot(sizes, ys, "o:", label="cubecut auto (warm)")
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xticks(sizes, [f"{s}x{s}" for s in sizes])
        ax.set_title(f"cutout, 1,000-frame cube, {lat}", fontsize=9)
        ax.set_ylabel("wall s"), ax.grid(alpha=.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    p = outdir / "cutout_wall.png"
    fig.savefig(p, dpi=80)
    plt.close(fig)
    made.append(p.name)

    # 2. moto vs s3rver scaling
    sc = (data.get("scaling") or {}).get("rows", [])
    if sc:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        for server in ("moto", "s3rver"):
            rs = [r for r in sc if r["server"] == server]
            ax.plot([r["object_mb"] for r in rs], [r["median_ms"] for r in rs], "o-", label=server)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel("object size MB"), ax.set_ylabel("256 KiB range GET, ms")
        ax.legend(), ax.grid(alpha=.3)
        fig.tight_layout()
        p = outdir / "range_get_scaling.png"
        fig.savefig(p, dpi=80)
        plt.close(fig)
        made.append(p.name)

    # 3. ingest throughput
    runs = [r for r in (data.get("ingest") or {}).get("runs", []) if r.get("ok")]
    if runs:
        fig, ax1 = plt.subplots(figsize=(6.5, 3.2))
        labels = [r["label"].replace("make_cube ", "\n") for r in runs]
        ax1.bar(range(len(runs)), [r["cube_mb_s"] for r in runs], color="tab:blue")
        ax1.set_ylabel("cube MB/s", color="tab:blue")
        ax2 = ax1.twinx()
        ax2.plot(range(len(runs)), [r["peak_rss_mb"] for r in runs], "ro", label="peak RSS")
        ax2.set_ylabel("peak RSS MB", color="tab:red")
        ax1.set_xticks(range(len(runs)), labels, fontsize=7)
        ax1.set_title("ingest", fontsize=9)
        fig.tight_layout()
        p = outdir / "ingest.png"
        fig.savefig(p, dpi=80)
        plt.close(fig)
        made.append(p.name)
    return made


def write(data: dict, outdir: Path = RESULTS, quick: bool = False) -> Path:
    outdir.mkdir(exist_ok=True)
    rows = data.get("cutout", [])
    lines = [f"# cubecut benchmark results{' (quick)' if quick else ''}", "",
             "Ratios are measured within one run; see README for the set-up. The runs of the sections:", "",
             stamp.markdown(data["stamps"])]
    if data.get("cubes"):
        lines += ["Cubes: " + ", ".join(f"{k}: sector {v['sector']}, {v['nt']} frames x {v['nrows']} rows x "
                                        f"{v['ncols']} cols" for k, v in data["cubes"].items()), ""]
    t_lines, heads = cutout_table(rows) if rows else ([], [])
    target_at = len(lines)
    if heads:
        lines += ["## Headline: 30x30 cutout", "", "| latency | frames | cubecut auto cold / warm s | astrocut s | tesscube cold / warm s | "
                  "x astrocut | x tesscube (cold/warm) | cubecut bytes / min |", "|---|---|---|---|---|---|---|---|"]
        for h in heads:
            if h["size"] != 30:
                continue
            c, a, t = h.get("cubecut auto", {}), h.get("astrocut auto", {}), h.get("tesscube", {})
            lines.append(f"| {h['latency']} | {h['nt']} | {_fmt(c.get('cold'), '.3f')} / {_fmt(c.get('warm'), '.3f')} | "
                         f"{_fmt(a.get('cold'), '.2f')} | {_fmt(t.get('cold'), '.2f')} / {_fmt(t.get('warm'), '.2f')} | "
                         f"{_fmt(a.get('x_cold'), '.1f')}x | {_fmt(t.get('x_cold'), '.1f')}x / {_fmt(t.get('x_warm'), '.1f')}x | "
                         f"{_fmt(c.get('bytes_over_min'), '.4f')} |")
        lines += ["", "## All cutouts", "", "x = tool wall time / cubecut auto wall time (same phase). Requests and "
                  "bytes are counted at the proxy (cold run; bytes are response bodies, min = rows x cols x frames x 8).",
                  ""] + t_lines + [""]
    hl = data.get("headline")
    if hl:
        def med(xs):
            xs = sorted(x for x in xs if x is not None)
            return xs[len(xs) // 2] if xs else None

        tools = list(dict.fromkeys(h["tool"] for h in hl))
        agg = {t: {ph: med([(h.get(ph) or {}).get("wall_s") for h in hl if h["tool"] == t]) for ph in ("cold", "warm")}
               for t in tools}
        rounds = len({h.get("round") for h in hl})
        ast = agg.get("astrocut auto", {})
        lines += [f"## Headline repeated: 30x30, 1,000 frames, {hl[0]['latency']}, 2 positions x {rounds} interleaved rounds", "",
                  "Median over all runs of each tool.", "",
                  "| tool | cold s | warm s | astrocut cold / tool cold | astrocut cold / tool warm |", "|---|---|---|---|---|"]
        for t in tools:
            lines.append(f"| {t} | {_fmt(agg[t]['cold'], '.3f')} | {_fmt(agg[t]['warm'], '.3f')} | "
                         f"{_fmt(_ratio(ast.get('cold'), agg[t]['cold']), '.1f')}x | "
                         f"{_fmt(_ratio(ast.get('cold'), agg[t]['warm']), '.1f')}x |")
        lines.append("")
        data["_headline_agg"] = agg
    m = data.get("multi")
    if m:
        c, a = m["cubecut"].get("cold") or {}, m["astrocut"].get("cold") or {}
        lines += ["## Multi-target and multi-sector", "", "| case | cubecut s | astrocut s | x | cubecut requests | astrocut requests |",
                  "|---|---|---|---|---|---|",
                  f"| {m['ntargets']} targets {m['size']}x{m['size']}, one cube, {m['latency']} (astrocut: {m['astrocut_timed_targets']} timed, scaled) | "
                  f"{_fmt(c.get('wall_s'))} | {_fmt(a.get('wall_s'), '.1f')} | {_fmt(_ratio(a.get('wall_s'), c.get('wall_s')), '.0f')}x | "
                  f"{_fmt(c.get('proxy_requests'), 'd')} | {_fmt(a.get('proxy_requests'), '.0f')} |"]
        t3 = m.get("three_sectors") or {}
        c3, a3 = (t3.get("cubecut") or {}).get("cold") or {}, (t3.get("astrocut") or {}).get("cold") or {}
        lines.append(f"| 3 sectors 30x30 (cubecut concurrent, astrocut sequential) | {_fmt(c3.get('wall_s'))} | "
                     f"{_fmt(a3.get('wall_s'))} | {_fmt(_ratio(a3.get('wall_s'), c3.get('wall_s')), '.1f')}x | "
                     f"{_fmt(c3.get('proxy_requests'), 'd')} | {_fmt(a3.get('proxy_requests'), 'd')} |")
        lines.append("")
    ing = data.get("ingest")
    if ing:
        lines += ["## Ingest", "", f"{ing['ffis']} full-size FFIs (2078 x 2136, {ing['input_bytes'] / 1e9:.1f} GB) → "
                  f"{ing['cube_bytes'] / 1e9:.1f} GB cube. MB/s = cube bytes / wall.", "",
                  "| run | wall s | cube MB/s | peak RSS MB |", "|---|---|---|---|"]
        for r in ing["runs"]:
            lines.append(f"| {r['label']} | {_fmt(r['wall_s'], '.1f')} | {_fmt(r['cube_mb_s'], '.0f')} | "
                         f"{_fmt(r['peak_rss_mb'], '.0f')} |" + ("" if r.get("ok") else f" error: {r.get('error')}"))
        lines += ["", "| block worker (FFIs on S3) | latency | rows | plan s | block s | RSS before → peak MB | requests |",
                  "|---|---|---|---|---|---|---|"]
        for b in ing.get("block_worker", []):
            lines.append(f"| {b['block_mb']} MiB | {b.get('latency', '0 ms')} | {b.get('block_rows')} | "
                         f"{_fmt(b.get('plan_s'))} | {_fmt(b.get('wall_s'))} | "
                         f"{_fmt(b.get('rss_before_block_mb'), '.0f')} → {_fmt(b.get('peak_rss_mb'), '.0f')} | "
                         f"{b.get('requests')} |")
        lines.append("")
    model = data.get("model")
    if model and model.get("sectors"):
        chk = (model.get("measured") or {}).get("check_vs_shaped_block") or {}
        lines += ["## Sector model (Lambda, MaxConcurrency 200)", "",
                  f"Inputs: worker CPU rate {model['measured']['cpu_MB_s_per_worker']:.0f} MB/s (measured, local W=1), "
                  f"plan {model['measured']['plan_s_per_ffi_at_30ms'] * 1000:.0f} ms per FFI (measured at 30 ms), "
                  f"TTFB 30 ms, 100 MB/s per Lambda, 32 GETs in flight, 5,500 GET/s per prefix. "
                  f"Check: the 64 MiB block behind the shaper took {_fmt(chk.get('measured_s'))} s, formula "
                  f"{_fmt(chk.get('predicted_s'))} s (s3rver costs ~{_fmt((chk.get('s3rver_s_per_request_0ms') or 0) * 1000, '.1f')} ms "
                  "per request, serially).", "",
                  "| sector | FFIs | cube GB | rows/block | block MiB | worker GB | blocks | s/block | GETs (M) | prefixes | "
                  "compute s | GET-bound s | plan s | minutes |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in model["sectors"]:
            lines.append(f"| {s['sector']} | {s['ffis']} | {s['cube_gb']:.0f} | {s['block_rows']} | {s['block_mib']:.0f} | "
                         f"{s['worker_mem_gb']:.1f} | {s['blocks']} | {s['block_s']:.1f} | {s['gets'] / 1e6:.2f} | "
                         f"{s['prefixes']} | {s['compute_s']:.0f} | {s['get_bound_s']:.0f} | {s['plan_s']:.0f} | "
                         f"**{s['wall_min']:.1f}** |")
        lines.append("")
    sc = (data.get("scaling") or {}).get("rows")
    if sc:
        lines += ["## Range GET latency vs object size (256 KiB range)", "", "| server | object MB | median ms |", "|---|---|---|"]
        lines += [f"| {r['server']} | {r['object_mb']} | {r['median_ms']:.1f} |" for r in sc]
        lines.append("")
    lines[target_at:target_at] = ["## Targets", ""] + targets(data, heads) + [""]
    data.pop("_headline_agg", None)
    try:
        made = plots(data, heads, outdir)
        lines += ["## Plots", ""] + [f"![{m}]({m})" for m in made]
    except Exception as exc:  # plots are optional
        lines += [f"(plots failed: {exc})"]
    path = outdir / ("results-quick.md" if quick else "results.md")
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    data = json.loads((RESULTS / ("results-quick.json" if quick else "results.json")).read_text())
    print(write(data, RESULTS, quick))
