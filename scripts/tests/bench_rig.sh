#!/usr/bin/env bash
# The benchmark rig runs (xlvs-bench run --quick): its own netns lab, the five
# data planes side by side at 20 000 frames/s and as fast as possible (1 s
# each), wrk short connections through nftables DNAT and xlvs NAT. Checks that
# every plane delivered the light load, that CPU and latency were measured
# (xlvs NAT in one worker thread, xlvs-q0; nat-split in one per interface),
# that connections still work through xlvs NAT after the overload (a worker
# whose TX backlog outgrew its ring used to stall for good), and that the JSON
# and the four SVG plots (throughput, CPU per packet, CPU per connection, latency)
# are written. Timings are not asserted: benchmarks are not
# tests.
# Prints PASS/FAIL bench_rig.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
BENCH=${XLVS_BENCH:-$TESTLIB_ROOT/target/release/xlvs-bench}

test_init rig
[ -x "$BENCH" ] || fail "xlvs-bench not built: $BENCH"
command -v wrk >/dev/null || fail "wrk not installed (scripts/setup.sh)"
# In the test's lab directory, which the test library's cleanup removes.
OUT=$(lab_dir "$ID")
mkdir -p "$OUT"
PLANES=xdp,nft,nat,dr,nat-split
log "running $BENCH run --quick --planes $PLANES --out $OUT"
"$BENCH" run --quick --planes "$PLANES" --out "$OUT" >"$OUT/table.txt" 2>"$OUT/progress.txt" ||
  fail "xlvs-bench run failed: $(tail -n 5 "$OUT/progress.txt")"
cat "$OUT/progress.txt" "$OUT/table.txt"
grep -q '^\[10/10\] xlvs NAT, thread/socket' "$OUT/progress.txt" ||
  fail "no progress line for the 10th point"
grep -q 'xlvs LVS-NAT .* vs nftables DNAT' "$OUT/table.txt" || fail "no ratio line in the table"
python3 - "$OUT" <<'PY' || fail "results check failed (above)"
import json, sys, xml.etree.ElementTree as ET
out = sys.argv[1]
r = json.load(open(f"{out}/results.json"))
bad = []
planes = [p["plane"] for p in r["points"]]
if planes != ["xdp", "xdp", "nft", "nft", "nat", "nat", "dr", "dr", "nat-split", "nat-split"]:
    bad.append(f"points: {planes}")
for p in r["points"]:
    name = f'{p["plane"]}@{p["target_pps"]}'
    if p["generator"]["sent"] == 0 or p["sink"]["received"] == 0:
        bad.append(f"{name}: sent {p['generator']['sent']}, received {p['sink']['received']}")
    if p["target_pps"] == 20000 and p["sink"]["received"] < 0.5 * p["generator"]["sent"]:
        bad.append(f"{name}: delivered under half of a light load: {p['sink']['received']}/{p['generator']['sent']}")
    lat = p["sink"]["latency"]
    if not (0 < lat["p50"] <= lat["p99"] <= lat["max"]) or len(lat["cdf"]) < 10:
        bad.append(f"{name}: latency {lat}")
    if p["director_cores"] <= 0 or not p["cpu_by_thread"]:
        bad.append(f"{name}: no director CPU measured")
    workers = sorted(k for k in p["cpu_by_thread"] if k.startswith("xlvs-") and k != "xlvs-bench")
    want = {"nat": 1, "dr": 1, "nat-split": 2}.get(p["plane"], 0)
    if len(workers) != want or (want == 1 and workers != ["xlvs-q0"]):
        bad.append(f"{name}: want {want} xlvsd worker thread(s), have {workers}")
    if not any(k.startswith("napi/") for k in p["cpu_by_thread"]):
        bad.append(f"{name}: NAPI threads missing from {sorted(p['cpu_by_thread'])}")
    if set(p["drops"]) != {"director_in", "sink_in"}:
        bad.append(f"{name}: drops {p['drops']}")
conns = {c["plane"]: c for c in r["conn_rate"]}
for plane in ("nft", "nat"):
    c = conns.get(plane)
    if not c or c["requests"] < 50 or c["failed"] != 0:
        bad.append(f"connection rate through {plane}: {c}")
ratios = {(x["plane"], x["vs"]) for x in r["ratios"]}
for want in [("nat", "nft"), ("nat", "xdp"), ("dr", "nft"), ("nft", "xdp")]:
    if want not in ratios:
        bad.append(f"ratio {want} missing")
for svg in ("throughput.svg", "cpu.svg", "latency.svg"):
    root = ET.parse(f"{out}/{svg}").getroot()
    text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for label in ("XDP forwarder", "nftables DNAT", "xlvs LVS-NAT", "xlvs LVS-DR", "thread/socket"):
        if label not in text:
            bad.append(f"{svg}: no legend entry {label!r}")
# The short connections' plot: a bar and its figure per plane wrk ran through.
root = ET.parse(f"{out}/conns.svg").getroot()
text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
for plane in ("nft", "nat"):
    c = conns[plane]
    for want in (f"{c['cpu_us_per_conn']:.0f}",):
        if want not in text:
            bad.append(f"conns.svg: no figure {want} for {plane}")
for label in ("nftables DNAT", "xlvs LVS-NAT"):
    if label not in text:
        bad.append(f"conns.svg: no legend entry {label!r}")
for b in bad:
    print("BAD", b)
sys.exit(1 if bad else 0)
PY
ip netns list | has '^xb[0-9]*-' && fail "the rig left namespaces behind: $(ip netns list | grep '^xb')"
pass
