"""tflm against Hugging Face transformers + PyTorch on the same CPU, in one run.

  benchmarks/torch_reference/setup.sh          # once: PyTorch 2.13 CPU + transformers in their own venv
  python benchmarks/throughput.py --sst2_dir=../shared/data/sst2

Every measurement is its own process; the configurations of a part run in
turn, repetition by repetition (tflm, torch, tflm, torch, ...), so drift on
the machine hits all of them alike. Reported: median, min and max over the
repetitions. Parts:

  peak       bf16 / fp32 matmul GFLOP/s (TF and torch; best of 5 calls); the
             one of the dtype tflm's default precision computes in is the
             MFU denominator
  training   examples/s at batch 32, seq 64 and 128, full-length rows:
             tflm's classify pipeline (default settings, and XLA on) vs
             HF BertForSequenceClassification (fp32 / bf16 autocast, eager /
             torch.compile); MFU; peak RSS
  mfu        paired, in one tflm process: the peak, the training step's
             matmuls alone and tflm's real training step, alternating call
             by call, each round's rates over that round's peak
  input      the training input pipeline alone, batches/s, vs the model's steps/s
  padding    SST-2 training: dynamic padding vs every batch padded to 128
             (epoch time from the steady-state step rate)
  memory     RSS after each of 5 epochs of a small run (leak check)
  serving    exported SavedModel vs HF eager: 1-sentence p50/p95, batch-32 texts/s
  decoding   MiniLM2MiniLM, greedy and beam 4, 32 new tokens, examples/s

Writes benchmarks/results/throughput.json and prints the tables. Parts not
run keep their earlier entries; "measured" records when and on which CPU each
part was last run.
"""

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import BATCH  # noqa: E402
from benchmarks.common import RESULTS_DIR  # noqa: E402
from benchmarks.common import ROOT  # noqa: E402
from benchmarks.common import latest_export  # noqa: E402
from benchmarks.common import matmul_dtype  # noqa: E402
from benchmarks.common import training_flops_per_example  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("sst2_dir", os.path.join("..", "shared", "data", "sst2"), "SST-2 folder (train.tsv.gz, dev.tsv).")
flags.DEFINE_string("torch_venv", "/tmp/tflm_bench/torch_venv", "Venv of benchmarks/torch_reference/setup.sh "
                    "(made if missing).")
flags.DEFINE_string("work_dir", "/tmp/tflm_bench/throughput", "Scratch folder.")
flags.DEFINE_integer("repetitions", 3, "Repetitions of every measurement.", lower_bound=1)
flags.DEFINE_list("seq_lengths", ["64", "128"], "Training sequence lengths.")
flags.DEFINE_integer("train_steps", 10, "Timed training steps per run (after warm-up).")
flags.DEFINE_integer("padding_steps", 40, "Timed steps of each SST-2 padding run.")
flags.DEFINE_list("parts", ["peak", "training", "mfu", "input", "padding", "memory", "serving", "decoding"],
                  "Parts to run.")
flags.DEFINE_boolean("torch_compile", True, "Include torch.compile configurations.")
flags.DEFINE_list("torch_precisions", ["fp32", "bf16"], "PyTorch training precisions (bf16: autocast).")
flags.DEFINE_list("xla_seq_lengths", ["64"], "Sequence lengths at which tflm also runs with --jit_compile=true.")
flags.DEFINE_list("tflm_precisions", ["float32", "mixed_bfloat16"],
                  "Precisions tflm also trains in explicitly, beside its default (--precision=auto), to show "
                  "that auto picked the faster one on this machine.")

RESULTS_FILE = os.path.join(RESULTS_DIR, "throughput.json")


def machine_description():
    """The CPU a part ran on. The results file keeps parts from earlier runs, maybe of other machines."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    fields = {key.strip(): value.strip() for key, value in
              (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    bf16_units = " ".join(f for f in ("avx512_bf16", "amx_bf16") if f in fields.get("flags", "").split())
    return f"{fields.get('model name', 'unknown CPU')}, {os.cpu_count()} cores, {bf16_units or 'no bf16 units'}"


# -- running one measurement --------------------------------------------------
def _run(command, env=None, timeout=3600):
    """Runs a measurement process; returns (RESULT json, peak RSS MB of that process)."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT, **(env or {}))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=environment)
    stdout, stderr = process.communicate(timeout=timeout)
    if process.returncode:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{stderr[-3000:]}")
    line = next((x for x in stdout.splitlines() if x.startswith("RESULT ")), None)
    return json.loads(line[len("RESULT "):]) if line else None


def torch_run(*args):
    return _run([os.path.join(FLAGS.torch_venv, "bin", "python"),
                 os.path.join(ROOT, "benchmarks", "torch_reference", "run.py"), *args])


def tflm_measure(*args):
    return _run([sys.executable, os.path.join(ROOT, "benchmarks", "tflm_measure.py"), *args])


def classify_run(name, *flags_):
    """Runs tflm-classify (--mode=train) and returns its train_stats.json."""
    model_dir = os.path.join(FLAGS.work_dir, "runs", f"{name}-{time.time_ns()}")
    _run([sys.executable, "-m", "pipelines.classify", f"--model_dir={model_dir}", "--mode=train",
          f"--batch_size={BATCH}", "--checkpoint_every_steps=100000", *flags_])
    with open(os.path.join(model_dir, "train_stats.json")) as f:
        return json.load(f)


def spread(values):
    values = [v for v in values if v is not None]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


# -- data -----------------------------------------------------------------------
def sst2_sentences(split):
    import gzip

    path = os.path.join(FLAGS.sst2_dir, "train.tsv.gz" if split == "train" else "dev.tsv")
    with (gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")) as f:
        next(f)
        return [line.split("\t")[0] for line in f]


def full_length_data(path, rows):
    """A classify TSV whose every row is longer than any sequence length measured (fixed shapes)."""
    words = " ".join(sst2_sentences("dev")).split()
    generator = random.Random(0)
    with open(path, "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n")
        for i in range(rows):
            f.write(" ".join(generator.choice(words) for _ in range(200)) + f"\t{'ab'[i % 2]}\n")
    return path


# -- parts --------------------------------------------------------------------------
def part_peak(results):
    tf_runs, torch_runs = [], []
    for _ in range(FLAGS.repetitions):
        tf_runs.append(tflm_measure("matmul"))
        torch_runs.append(torch_run("matmul"))
    results["peak"] = {
        "tensorflow": {k: spread([r[k] for r in tf_runs]) for k in tf_runs[0]},
        "torch": {k: spread([r[k] for r in torch_runs]) for k in ("bf16_gflops", "fp32_gflops")},
    }


def part_training(results, minilm):
    data = full_length_data(os.path.join(FLAGS.work_dir, "full_length.tsv"), 800)
    small = full_length_data(os.path.join(FLAGS.work_dir, "full_length_eval.tsv"), 32)
    configs = []
    for seq in (int(s) for s in FLAGS.seq_lengths):
        common = [f"--train_data={data}", f"--eval_data={small}", f"--max_seq_length={seq}",
                  f"--train_steps={FLAGS.train_steps + 1}", "--eval_every_steps=100000"]
        configs.append((seq, "tflm (default settings)", lambda c=common: classify_run("train", *c)))
        for precision in FLAGS.tflm_precisions:
            configs.append((seq, f"tflm, --precision={precision}",
                            lambda c=common, p=precision: classify_run("precision", *c, f"--precision={p}")))
        if str(seq) in FLAGS.xla_seq_lengths:
            configs.append((seq, "tflm, --jit_compile=true",
                            lambda c=common: classify_run("xla", *c, "--jit_compile=true")))
        for precision in FLAGS.torch_precisions:
            for compiled in ([False, True] if FLAGS.torch_compile else [False]):
                args = ["train", f"--model={minilm}", f"--seq={seq}", f"--batch={BATCH}", f"--precision={precision}",
                        f"--steps={FLAGS.train_steps}", "--warmup=3", *(["--compile"] if compiled else [])]
                name = f"HF torch {precision}{' + torch.compile' if compiled else ''}"
                configs.append((seq, name, lambda a=args: torch_run(*a)))
    runs = {}
    for _ in range(FLAGS.repetitions):
        for seq, name, run in configs:
            result = run()
            rate = result["steps_per_second"] * BATCH if "steps_per_second" in result else result["examples_per_second"]
            runs.setdefault((seq, name), []).append((rate, result.get("peak_rss_mb"), result.get("precision")))
    rows = []
    for (seq, name), values in runs.items():
        rate = spread([v[0] for v in values])
        flops = training_flops_per_example(seq) * rate["median"] / 1e9
        # tflm's MFU is against the peak of the dtype its matmuls ran in; torch rows have none.
        precision = "/".join(sorted({v[2] for v in values if v[2]})) or None
        peak_dtype = matmul_dtype(precision) if precision else None
        peak = results.get("peak", {}).get("tensorflow", {}).get(f"{peak_dtype}_gflops", {}).get("median")
        rows.append({"seq": seq, "config": name, "precision": precision,
                     "examples_per_second": rate, "gflops": flops, "peak_dtype": peak_dtype,
                     "mfu": flops / peak if peak else None,
                     "peak_rss_mb": max(v[1] for v in values if v[1] is not None)})
    for seq in {r["seq"] for r in rows}:
        best_torch = max(r["examples_per_second"]["median"] for r in rows if r["seq"] == seq and "torch" in r["config"])
        for r in rows:
            if r["seq"] == seq:
                r["ratio_vs_best_torch"] = r["examples_per_second"]["median"] / best_torch
    results["training"] = rows


def part_mfu(results):
    runs = [tflm_measure("mfu", f"--seq_lengths={','.join(FLAGS.seq_lengths)}") for _ in range(FLAGS.repetitions)]
    results["mfu"] = {seq: dict({k: spread([r[seq][k] for r in runs])
                                 for k in ("peak_gflops", "step_matmuls_vs_peak", "mfu", "step_gflops")},
                                precision="/".join(sorted({r[seq]["precision"] for r in runs})))
                      for seq in runs[0]}


def part_input(results):
    train = os.path.join(FLAGS.sst2_dir, "train.tsv.gz")
    runs = [tflm_measure("input_pipeline", f"--train_file={train}", "--max_seq_length=128", "--batches=300")
            for _ in range(FLAGS.repetitions)]
    results["input"] = {k: spread([r[k] for r in runs]) for k in runs[0]}


def part_padding(results):
    train, dev = os.path.join(FLAGS.sst2_dir, "train.tsv.gz"), os.path.join(FLAGS.sst2_dir, "dev.tsv")
    common = [f"--train_data={train}", f"--eval_data={dev}", "--max_seq_length=128",
              f"--train_steps={FLAGS.padding_steps + 1}", "--eval_every_steps=100000"]
    runs = {"dynamic": [], "max_length": []}
    for _ in range(FLAGS.repetitions):
        for padding in runs:
            runs[padding].append(classify_run(f"pad-{padding}", *common, f"--padding={padding}")["steps_per_second"])
    steps_per_epoch = len(sst2_sentences("train")) // BATCH
    results["padding"] = {p: {"steps_per_second": spread(v), "epoch_minutes": steps_per_epoch / statistics.median(v) / 60}
                          for p, v in runs.items()}
    results["padding"]["speedup"] = (results["padding"]["max_length"]["epoch_minutes"]
                                     / results["padding"]["dynamic"]["epoch_minutes"])
    step_rate = results["padding"]["dynamic"]["steps_per_second"]["median"]
    if "input" in results:
        results["input"]["input_batches_per_model_step"] = results["input"]["batches_per_second"]["median"] / step_rate


def part_memory(results):
    data = full_length_data(os.path.join(FLAGS.work_dir, "memory.tsv"), 320)
    stats = classify_run("memory", f"--train_data={data}", f"--eval_data={data}", "--max_seq_length=128",
                         "--num_epochs=5")
    rss = stats["rss_mb_at_epoch_end"]
    later = rss[1:5]
    results["memory"] = {"rss_mb_at_epoch_end": rss, "peak_rss_mb": stats["peak_rss_mb"],
                         "epochs_2_to_5_spread": (max(later) - min(later)) / later[0]}


# Exports compared in the serving part: tflm's default (the precision
# --precision=auto picks on this machine), and a mixed_bfloat16 model exported
# with its bfloat16-read weights in bfloat16 (the default for such a model)
# and with float32 weights answering every request in float32.
SERVING_EXPORTS = {  # row name: (--precision, --serving_float32_max_batch)
    "tflm SavedModel (default settings)": ("auto", 0),
    "tflm SavedModel, mixed_bfloat16: bfloat16 weights": ("mixed_bfloat16", 0),
    "tflm SavedModel, mixed_bfloat16: float32 weights and path": ("mixed_bfloat16", 1024),
}


def part_serving(results, minilm):
    dev = os.path.join(FLAGS.work_dir, "sst2_dev.txt")
    export_dir = os.path.join(FLAGS.work_dir, "savedmodels")
    data = [f"--train_data={os.path.join(FLAGS.sst2_dir, 'train.tsv.gz')}",
            f"--eval_data={os.path.join(FLAGS.sst2_dir, 'dev.tsv')}", f"--export_dir={export_dir}",
            "--max_seq_length=128"]
    model_dirs = {}  # One 20-step model per precision.
    for precision in sorted({precision for precision, _ in SERVING_EXPORTS.values()}):
        model_dirs[precision] = os.path.join(FLAGS.work_dir, "runs", f"serving-{precision}-{time.time_ns()}")
        _run([sys.executable, "-m", "pipelines.classify", *data, f"--model_dir={model_dirs[precision]}",
              f"--precision={precision}", "--mode=train", "--train_steps=20"])
    exports = {}
    for index, (name, (precision, float32_max_batch)) in enumerate(SERVING_EXPORTS.items()):
        export_name = f"sst2_serving_{index}"
        _run([sys.executable, "-m", "pipelines.classify", *data, f"--model_dir={model_dirs[precision]}",
              f"--precision={precision}", "--mode=export", f"--export_name={export_name}",
              f"--serving_float32_max_batch={float32_max_batch}"])
        exports[name] = latest_export(export_dir, export_name)
    runs = {name: [] for name in [*exports, "HF torch eager"]}
    for _ in range(FLAGS.repetitions):
        for name, export in exports.items():
            runs[name].append(tflm_measure("serve", f"--export={export}", f"--texts_file={dev}"))
        runs["HF torch eager"].append(torch_run("serve", f"--model={minilm}", f"--texts_file={dev}"))
    results["serving"] = {name: dict(
        {k: spread([r[k] for r in values]) for k in ("p50_ms", "p95_ms", "batch32_texts_per_second")},
        p50_ms_by_batch={size: spread([r["p50_ms_by_batch"][size] for r in values])
                         for size in values[0]["p50_ms_by_batch"]})
        for name, values in runs.items()}


def part_decoding(results, minilm):
    dev = os.path.join(FLAGS.work_dir, "sst2_dev.txt")
    rows = {}
    for _ in range(FLAGS.repetitions):
        for beams in (1, 4):
            args = [f"--texts_file={dev}", f"--beams={beams}", "--length=32", "--batch=8"]
            rows.setdefault(("tflm", beams), []).append(tflm_measure("decode", *args)["examples_per_second"])
            rows.setdefault(("HF torch generate", beams), []).append(
                torch_run("generate", f"--model={minilm}", *args)["examples_per_second"])
    results["decoding"] = [{"framework": f, "beams": b, "examples_per_second": spread(v)} for (f, b), v in rows.items()]


# -- report ---------------------------------------------------------------------------
def report(results):
    for name, when in results.get("measured", {}).items():
        print(f"{name}: measured {when['date']} on {when['machine']}")
    if "peak" in results:
        p = results["peak"]
        print(f"\nmatmul peak GFLOP/s (median): TF bf16 {p['tensorflow']['bf16_gflops']['median']:.0f}, "
              f"fp32 {p['tensorflow']['fp32_gflops']['median']:.0f}; torch bf16 {p['torch']['bf16_gflops']['median']:.0f}, "
              f"fp32 {p['torch']['fp32_gflops']['median']:.0f}")
    if "training" in results:
        print("\n| seq | config | ex/s median (min-max) | GFLOP/s | MFU (vs its dtype's TF peak) | vs best torch "
              "| peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
        for r in sorted(results["training"], key=lambda r: (r["seq"], -r["examples_per_second"]["median"])):
            e = r["examples_per_second"]
            mfu = f"{100 * r['mfu']:.0f}% ({r['peak_dtype']})" if r["mfu"] else "-"
            config = f"{r['config']}: {r['precision']}" if r["precision"] else r["config"]
            print(f"| {r['seq']} | {config} | {e['median']:.1f} ({e['min']:.1f}-{e['max']:.1f}) | "
                  f"{r['gflops']:.0f} | {mfu} | {r['ratio_vs_best_torch']:.2f}x | {r['peak_rss_mb']:.0f} |")
    if "mfu" in results:
        print("\n| seq | precision | peak GFLOP/s | the step's matmuls alone, share of peak | tflm training step "
              "GFLOP/s | MFU (paired) |\n|---|---|---|---|---|---|")
        for seq, m in results["mfu"].items():  # Earlier runs' entries may lack "precision".
            print(f"| {seq} | {m.get('precision', 'not recorded')} | {m['peak_gflops']['median']:.0f} | {100 * m['step_matmuls_vs_peak']['median']:.0f}% | "
                  f"{m['step_gflops']['median']:.0f} | {100 * m['mfu']['median']:.0f}% "
                  f"({100 * m['mfu']['min']:.0f}-{100 * m['mfu']['max']:.0f}%) |")
    if "input" in results:
        i = results["input"]
        print(f"\ninput pipeline: {i['batches_per_second']['median']:.0f} batches/s; tokenizing "
              f"{i['examples']['median']:.0f} SST-2 rows {i['tokenize_seconds']['median']:.1f} s"
              + (f"; {i['input_batches_per_model_step']:.0f}x the model's step rate"
                 if "input_batches_per_model_step" in i else ""))
    if "padding" in results:
        p = results["padding"]
        print(f"\nSST-2 epoch (seq 128): dynamic {p['dynamic']['epoch_minutes']:.1f} min, padded to 128 "
              f"{p['max_length']['epoch_minutes']:.1f} min: {p['speedup']:.1f}x")
    if "memory" in results:
        m = results["memory"]
        print(f"\nRSS MB after epochs 1-5: {[round(x) for x in m['rss_mb_at_epoch_end']]}; epochs 2-5 spread "
              f"{100 * m['epochs_2_to_5_spread']:.1f}%")
    if "serving" in results:
        sizes = list(next(iter(results["serving"].values())).get("p50_ms_by_batch", {}))
        print("\n| serving | p50 ms | p95 ms | batch-32 texts/s | " + " | ".join(f"p50 ms, {n} texts" for n in sizes)
              + " |\n|---|---|---|---|" + "---|" * len(sizes))
        for name, s in results["serving"].items():
            by_batch = " | ".join(f"{s['p50_ms_by_batch'][n]['median']:.1f}" for n in sizes)
            print(f"| {name} | {s['p50_ms']['median']:.1f} | {s['p95_ms']['median']:.1f} | "
                  f"{s['batch32_texts_per_second']['median']:.0f} | {by_batch} |")
    if "decoding" in results:
        print("\n| decoding (batch 8, 32 tokens) | beams | ex/s median (min-max) |\n|---|---|---|")
        for r in results["decoding"]:
            e = r["examples_per_second"]
            print(f"| {r['framework']} | {r['beams']} | {e['median']:.2f} ({e['min']:.2f}-{e['max']:.2f}) |")


def main(argv):
    del argv
    FLAGS.sst2_dir = os.path.abspath(FLAGS.sst2_dir)
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    if not os.path.exists(os.path.join(FLAGS.torch_venv, "bin", "python")):
        subprocess.run([os.path.join(ROOT, "benchmarks", "torch_reference", "setup.sh"), FLAGS.torch_venv], check=True)
    from tflm import backbones

    minilm = backbones.resolve_backbone(backbones.BUNDLED_MINILM)
    with open(os.path.join(FLAGS.work_dir, "sst2_dev.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(sst2_sentences("dev")) + "\n")  # Requests for serving and decoding.
    results = {}
    if os.path.exists(RESULTS_FILE):
        with open(RESULTS_FILE) as f:
            results = json.load(f)
    parts = {"peak": lambda: part_peak(results), "training": lambda: part_training(results, minilm),
             "mfu": lambda: part_mfu(results),
             "input": lambda: part_input(results), "padding": lambda: part_padding(results),
             "memory": lambda: part_memory(results), "serving": lambda: part_serving(results, minilm),
             "decoding": lambda: part_decoding(results, minilm)}
    machine = machine_description()
    for name in FLAGS.parts:
        start = time.time()
        parts[name]()
        print(f"{name}: {time.time() - start:.0f} s", flush=True)
        results.setdefault("measured", {})[name] = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine,
            "seconds": round(time.time() - start)}
        os.makedirs(RESULTS_DIR, exist_ok=True)
        with open(RESULTS_FILE, "w") as f:
            json.dump(results, f, indent=1)
    report(results)
    print(f"wrote {RESULTS_FILE}")


if __name__ == "__main__":
    app.run(main)
