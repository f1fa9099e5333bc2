"""The Hugging Face transformers + PyTorch side of benchmarks/throughput.py.

Runs in the venv that setup.sh makes (never imports TensorFlow or tflm) and
prints one line `RESULT {json}`:

  run.py matmul
  run.py train --model=DIR --seq=64 --batch=32 --precision=bf16 --compile
  run.py serve --model=DIR --texts_file=F
  run.py generate --model=DIR --texts_file=F --beams=4 --length=32

Training matches tflm's classification step: BertForSequenceClassification
(2 classes) on full-length rows, AdamW (weight decay 0.01), gradient clipping
at 1.0; bf16 is `torch.autocast` (weights and optimizer in float32).
"""

import argparse
import json
import resource
import statistics
import time

import torch


def matmul_peak(size=2048, repeats=20, calls=5):
    """GFLOP/s of square matmuls: the best of `calls` timed calls of `repeats` products (as tflm_measure.py)."""
    result = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        for _ in range(3):
            torch.matmul(a, b)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            for _ in range(repeats):
                torch.matmul(a, b)
            times.append(time.perf_counter() - start)
        result[f"{name}_gflops"] = 2 * size ** 3 * repeats / min(times) / 1e9
    return result


def train(args):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=2)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    ids = torch.randint(1000, 30000, (args.batch, args.seq))
    ids[:, 0], ids[:, -1] = 101, 102
    mask, segments = torch.ones_like(ids), torch.zeros_like(ids)
    labels = torch.randint(0, 2, (args.batch,))
    forward = torch.compile(model) if args.compile else model

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = forward(input_ids=ids, attention_mask=mask, token_type_ids=segments, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - start
    return {"examples_per_second": args.batch * args.steps / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _texts(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


SWEEP_BATCH_SIZES = (1, 2, 4, 8, 16)


def serve(args):
    from transformers import BertForSequenceClassification
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab_file=f"{args.model}/vocab.txt", do_lower_case=True)
    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=2).eval()
    texts = _texts(args.texts_file)

    def predict(batch):
        inputs = tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode():
            return torch.softmax(model(**inputs).logits, dim=-1)

    for i in range(20):
        predict([texts[i % len(texts)]])
    times = []
    for i in range(args.requests):
        start = time.perf_counter()
        predict([texts[i % len(texts)]])
        times.append((time.perf_counter() - start) * 1000)

    def requests_of(size, count):  # `count` requests of `size` consecutive texts, wrapping around.
        return [[texts[(i + j) % len(texts)] for j in range(size)] for i in range(0, count * size, size)]

    by_batch = {}
    for size in SWEEP_BATCH_SIZES:  # The same sweep as tflm_measure.py serve.
        requests = requests_of(size, 40)
        predict(requests[0])
        sizes = []
        for request in requests:
            start = time.perf_counter()
            predict(request)
            sizes.append((time.perf_counter() - start) * 1000)
        by_batch[str(size)] = statistics.median(sizes)
    batches = requests_of(32, 10)
    predict(batches[0])
    start = time.perf_counter()
    for batch in batches:
        predict(batch)
    throughput = 32 * len(batches) / (time.perf_counter() - start)
    times.sort()
    return {"p50_ms": statistics.median(times), "p95_ms": times[int(0.95 * len(times)) - 1],
            "p50_ms_by_batch": by_batch, "batch32_texts_per_second": throughput}


def generate(args):
    from transformers import BertTokenizerFast
    from transformers import EncoderDecoderModel

    torch.manual_seed(0)
    tokenizer = BertTokenizerFast(vocab_file=f"{args.model}/vocab.txt", do_lower_case=True)
    # MiniLM2MiniLM: tflm's warm-started seq2seq at the same size.
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(args.model, args.model).eval()
    texts = _texts(args.texts_file)[:args.batch]
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")

    def run():
        with torch.inference_mode():
            # Exactly `length` new tokens per example, as on the tflm side.
            return model.generate(**inputs, num_beams=args.beams, do_sample=False, max_new_tokens=args.length,
                                  min_new_tokens=args.length, use_cache=True, decoder_start_token_id=101,
                                  pad_token_id=0, eos_token_id=102)

    run()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"examples_per_second": len(texts) / statistics.median(times)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["matmul", "train", "serve", "generate"])
    parser.add_argument("--model")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--texts_file")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--beams", type=int, default=1)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"matmul": lambda a: matmul_peak(), "train": train, "serve": serve, "generate": generate}[args.mode](args)
    result.update(torch=torch.__version__, threads=torch.get_num_threads())
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
