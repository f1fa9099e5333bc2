"""Text generation: greedy and beam search with key/value caches."""

from tflm.generation.decoding import DECODING_METHODS
from tflm.generation.decoding import DecodingConfig
from tflm.generation.decoding import SpecialTokens
from tflm.generation.decoding import generate
from tflm.generation.text_generation import generate_text
