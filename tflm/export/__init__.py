"""SavedModel export for TF Serving: raw text in, predictions out."""

from tflm.export.model_server_config import CONFIG_FILE
from tflm.export.saved_model_export import METADATA_FILE
from tflm.export.saved_model_export import ExportTarget
from tflm.export.saved_model_export import export_saved_model
from tflm.export.saved_model_versions import existing_versions
from tflm.export.saved_model_versions import write_new_version
from tflm.export.seq2seq_export import Seq2SeqServingModule
from tflm.export.seq2seq_export import export_seq2seq
from tflm.export.text_classifier_export import TextClassifierServingModule
from tflm.export.text_classifier_export import export_text_classifier
from tflm.export.verification import run_in_fresh_process
from tflm.export.verification import verify_export
from tflm.export.warmup_requests import WARMUP_FILE
