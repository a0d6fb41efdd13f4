"""Answers captured from the reference Triton 2.51, shared by the tests that compare against them."""

from __future__ import annotations

import json

#: `curl /v2/models/add_sub/config` from the reference tritonserver 2.51 (python backend) for a model written
#: with backend "python", max_batch_size 8, two FP32 [4] inputs and outputs,
#: dynamic_batching { max_queue_delay_microseconds: 100 } and instance_group [ { count: 2 kind: KIND_CPU } ].
REFERENCE_ADD_SUB_JSON = json.loads(
    '{"name":"add_sub","platform":"","backend":"python","runtime":"","version_policy":{"latest":{"num_versions":1}},'
    '"max_batch_size":8,"input":[{"name":"INPUT0","data_type":"TYPE_FP32","format":"FORMAT_NONE","dims":[4],'
    '"is_shape_tensor":false,"allow_ragged_batch":false,"optional":false,"is_non_linear_format_io":false},'
    '{"name":"INPUT1","data_type":"TYPE_FP32","format":"FORMAT_NONE","dims":[4],"is_shape_tensor":false,'
    '"allow_ragged_batch":false,"optional":false,"is_non_linear_format_io":false}],"output":[{"name":"OUTPUT0",'
    '"data_type":"TYPE_FP32","dims":[4],"label_filename":"","is_shape_tensor":false,"is_non_linear_format_io":false},'
    '{"name":"OUTPUT1","data_type":"TYPE_FP32","dims":[4],"label_filename":"","is_shape_tensor":false,'
    '"is_non_linear_format_io":false}],"batch_input":[],"batch_output":[],"optimization":{"priority":'
    '"PRIORITY_DEFAULT","input_pinned_memory":{"enable":true},"output_pinned_memory":{"enable":true},'
    '"gather_kernel_buffer_threshold":0,"eager_batching":false},"dynamic_batching":{"preferred_batch_size":[8],'
    '"max_queue_delay_microseconds":100,"preserve_ordering":false,"priority_levels":0,"default_priority_level":0,'
    '"priority_queue_policy":{}},"instance_group":[{"name":"add_sub_0","kind":"KIND_CPU","count":2,"gpus":[],'
    '"secondary_devices":[],"profile":[],"passive":false,"host_policy":""}],"default_model_filename":"model.py",'
    '"cc_model_filenames":{},"metric_tags":{},"parameters":{},"model_warmup":[]}'
)
