r"""Text generation: fine-tune a decoder-only (causal) LM on prompt/completion pairs -> string-to-string SavedModel.

The backbone is a KerasHub CausalLM preset (GPT-2 and alike, or a preset
written by tflm-pretrain --objective=causal_lm); offline the default is
`tiny_random_gpt2`. With no data flags it trains on the bundled demo pairs:

  tflm-generate-text                  # or: python -m pipelines.generate_text
  tflm-generate-text --backbone=gpt2_base_en --train_data=pairs_train.jsonl --eval_data=pairs_dev.jsonl \
      --source_field=prompt --target_field=completion

Each example is `[start] prompt [sep] completion [end]`; only the completion
is learned. The export takes raw prompts and returns the generated
completions (same signature as tflm-translate / tflm-summarize).
"""

from pipelines import seq2seq_pipeline
from tflm import backbones
from tflm.data import demo

DEFAULTS = seq2seq_pipeline.define_flags(seq2seq_pipeline.PipelineDefaults(
    name="generate_text", task="text_generation", demo_train=demo.GENERATION_TRAIN, demo_eval=demo.GENERATION_DEV,
    source_field="prompt", target_field="completion", max_source_length=256, max_target_length=64,
    target_vocabulary="source", best_metric="rougeL", export_name="text_generator", learning_rate=1e-3,
    num_epochs=3, backbone=backbones.TINY_RANDOM_GPT2,
))


def run():
    seq2seq_pipeline.run(DEFAULTS)


if __name__ == "__main__":
    run()
