"""A SentencePiece vocabulary learned from the training targets.

For targets the source vocabulary covers badly (German with an uncased
English WordPiece loses its umlauts and case), the decoder gets its own
vocabulary, trained once on the training targets and saved in --model_dir so
resumed runs, evaluation and export use exactly the same one.
"""

import io
import os

import tensorflow as tf
from absl import logging

from tflm.errors import UserError

VOCABULARY_FILE = "target_vocabulary.spm"
# Fixed ids the seq2seq preprocessor relies on.
SPECIAL_IDS = {"pad_id": 0, "unk_id": 1, "bos_id": 2, "eos_id": 3}


def train_sentencepiece(texts, vocabulary_size):
    """Serialized SentencePiece (unigram) model proto trained on `texts`."""
    import sentencepiece

    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=proto, vocab_size=vocabulary_size,
        model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
        num_threads=os.cpu_count() or 1, minloglevel=2, **SPECIAL_IDS,
    )
    return proto.getvalue()


def load_or_train(model_dir, texts, vocabulary_size):
    """The target tokenizer saved in `model_dir`, training and saving it first if needed.

    `texts` may be None when the model dir must already hold the vocabulary
    (evaluation and export).
    """
    import keras_hub

    path = os.path.join(model_dir, VOCABULARY_FILE)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path, "rb") as f:
            proto = f.read()
    elif texts is None:
        raise UserError(f"--model_dir={model_dir} holds no {VOCABULARY_FILE}; train first")
    else:
        logging.info("Learning a %d-piece SentencePiece target vocabulary from %d texts",
                     vocabulary_size, len(texts))
        proto = train_sentencepiece(texts, vocabulary_size)
        tf.io.gfile.makedirs(model_dir)
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(proto)
    return keras_hub.tokenizers.SentencePieceTokenizer(proto=proto)
