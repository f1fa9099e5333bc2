"""TF Serving warmup records: `assets.extra/tf_serving_warmup_requests`.

A TFRecord file of `PredictionLog` protos that TF Serving replays when it
loads a version, before the version takes traffic, so the first real
request does not pay for graph initialisation. Built with the real
`tensorflow-serving-api` protos.
"""

import os

import tensorflow as tf
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def prediction_log(model_name, signature, inputs):
    """A PredictionLog holding the PredictRequest for `inputs` (name -> numpy array) to `signature`."""
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
    for input_name, value in inputs.items():
        request.inputs[input_name].CopyFrom(tf.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def write_requests(path, model_name, requests):
    """Writes (signature, inputs) `requests` as a TFRecord of PredictionLog."""
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests:
            writer.write(prediction_log(model_name, signature, inputs).SerializeToString())
