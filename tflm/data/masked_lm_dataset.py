"""Tokenized text whose batches are masked for masked-LM training as they are served."""

import numpy as np
import tensorflow as tf

from tflm.data.masking import mask_batch
from tflm.data.tokenized_dataset import TokenizedDataset


class MaskedLMDataset(TokenizedDataset):
    """Features of unmasked text; batches come out masked, with targets `labels` / `label_weights`.

    Masks are drawn per batch (dynamic masking, as in RoBERTa), from the
    batch's number in the stream and a seed: the training stream is the same
    on every resume, and evaluation uses one fixed set of masks, so
    validation perplexities of different steps are comparable.
    """

    def __init__(self, features, masking, eval_seed):
        super().__init__(features, np.zeros(len(features["token_ids"]), np.int32))
        self.masking = masking
        self.eval_seed = eval_seed

    def training(self, batch_size, seed, bucket_width=16, pad_to_length=0):
        return self._masked(super().training(batch_size, seed, bucket_width, pad_to_length), seed)

    def evaluation(self, batch_size, bucket_width=16):
        return self._masked(super().evaluation(batch_size, bucket_width), self.eval_seed)

    def _masked(self, dataset, seed):
        base_seed = tf.constant([seed, 0], tf.int64)

        def mask(number, batch):
            features, _ = batch
            token_ids, positions, labels, weights = mask_batch(
                features["token_ids"], features["padding_mask"], self.masking,
                tf.random.experimental.stateless_fold_in(base_seed, number))
            features = dict(features, token_ids=token_ids, mask_positions=positions)
            return features, {"labels": labels, "label_weights": weights}

        dataset = dataset.enumerate().map(mask, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.prefetch(tf.data.AUTOTUNE)
