"""A small sentiment data set shipped with tflm, so the default command runs offline.

320 train / 80 dev movie-review sentences labelled `positive` / `negative`,
composed from hand-written subjects, openers and verdict phrases. Columns:
`sentence<TAB>label` with a header, like GLUE's SST-2.
"""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))
SENTIMENT_TRAIN = os.path.join(_HERE, "sentiment_train.tsv")
SENTIMENT_DEV = os.path.join(_HERE, "sentiment_dev.tsv")
