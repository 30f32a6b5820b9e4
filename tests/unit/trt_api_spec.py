"""The parts of the `tensorrt` Python API that qtoolkit touches, per major version.

Written from the pybind11 bindings in NVIDIA/TensorRT (python/src/infer/pyCore.cpp,
pyFoundationalTypes.cpp, python/src/parsers/pyOnnx.cpp) at tags v10.16 and v11.1: every
method, property and enum member those files bind for these classes. The fake `tensorrt` in
test_engine.py exposes exactly these names, so a call TensorRT does not have fails on CPU.
"""

from __future__ import annotations

__all__ = ["API", "ENUM_VALUES", "members"]

# class or enum -> names, as whitespace-separated text (one block per version).
_RAW: dict[int, dict[str, str]] = {
    10: {
        "Builder": """
            build_engine_with_config build_serialized_network build_serialized_network_to_stream
            create_builder_config create_network create_optimization_profile error_recorder
            get_plugin_registry gpu_allocator is_network_supported logger max_DLA_batch_size
            max_threads num_DLA_cores platform_has_fast_fp16 platform_has_fast_int8
            platform_has_tf32 reset
        """,
        "IBuilderConfig": """
            DLA_core add_optimization_profile algorithm_selector avg_timing_iterations
            builder_optimization_level can_run_on_DLA clear_flag clear_quantization_flag
            create_timing_cache default_device_type engine_capability flags get_calibration_profile
            get_device_type get_flag get_memory_pool_limit get_preview_feature get_quantization_flag
            get_tactic_sources get_timing_cache hardware_compatibility_level int8_calibrator
            is_device_type_set l2_limit_for_tiling max_aux_streams max_num_tactics
            num_optimization_profiles plugins_to_serialize profile_stream profiling_verbosity
            progress_monitor quantization_flags remote_auto_tuning_config reset reset_device_type
            runtime_platform set_calibration_profile set_device_type set_flag set_memory_pool_limit
            set_preview_feature set_quantization_flag set_tactic_sources set_timing_cache
            tiling_optimization_level
        """,
        "OnnxParser": """
            clear_errors clear_flag flags get_error get_flag get_layer_output_tensor
            get_subgraph_nodes get_used_vc_plugin_libraries is_subgraph_supported load_initializer
            load_model_proto num_errors num_subgraphs parse parse_from_file parse_model_proto
            parse_with_weight_descriptors set_builder_config set_flag supports_model
            supports_model_v2 supports_operator
        """,
        "ParserError": """
            code desc file func line local_function_stack local_function_stack_size node node_name
            node_operator
        """,
        "Runtime": """
            DLA_core deserialize_cuda_engine engine_host_code_allowed error_recorder
            get_plugin_registry gpu_allocator load_runtime logger max_threads num_DLA_cores
            tempfile_control_flags temporary_directory
        """,
        "ICudaEngine": """
            create_engine_inspector create_execution_context
            create_execution_context_without_device_memory create_runtime_config
            create_serialization_config device_memory_size device_memory_size_v2 engine_capability
            error_recorder get_aliased_input_tensor get_device_memory_size_for_profile
            get_device_memory_size_for_profile_v2 get_engine_stat get_tensor_bytes_per_component
            get_tensor_components_per_element get_tensor_dtype get_tensor_format
            get_tensor_format_desc get_tensor_location get_tensor_mode get_tensor_name
            get_tensor_profile_shape get_tensor_profile_values get_tensor_shape
            get_tensor_vectorized_dim get_weight_streaming_automatic_budget
            hardware_compatibility_level has_implicit_batch_dimension is_debug_tensor
            is_shape_inference_io minimum_weight_streaming_budget name num_aux_streams
            num_io_tensors num_layers num_optimization_profiles profiling_verbosity refittable
            serialize serialize_with_config streamable_weights_size tactic_sources
            weight_streaming_budget weight_streaming_budget_v2 weight_streaming_scratch_memory_size
        """,
        "IExecutionContext": """
            active_optimization_profile all_binding_shapes_specified all_shape_inputs_specified
            debug_sync device_memory engine enqueue_emits_profile error_recorder execute_async_v3
            execute_v2 get_debug_listener get_debug_state get_input_consumed_event
            get_max_output_size get_output_allocator get_runtime_config get_tensor_address
            get_tensor_shape get_tensor_strides infer_shapes name nvtx_verbosity
            persistent_cache_limit profiler report_to_profiler set_all_tensors_debug_state
            set_aux_streams set_communicator set_debug_listener set_device_memory
            set_input_consumed_event set_input_shape set_optimization_profile_async
            set_output_allocator set_tensor_address set_tensor_debug_state temporary_allocator
            unfused_tensors_debug_state update_device_memory_size_for_shapes
        """,
        "IOptimizationProfile": """
            extra_memory_target get_shape get_shape_input set_shape set_shape_input
        """,
        "ITimingCache": """
            combine query queryKeys reset serialize update
        """,
        "EngineInspector": """
            error_recorder execution_context get_engine_information get_layer_information
        """,
        "Severity": """
            ERROR INFO INTERNAL_ERROR VERBOSE WARNING
        """,
        "NetworkDefinitionCreationFlag": """
            EXPLICIT_BATCH PREFER_AOT_PYTHON_PLUGINS PREFER_JIT_PYTHON_PLUGINS STRONGLY_TYPED
        """,
        "BuilderFlag": """
            BF16 DEBUG DIRECT_IO DISABLE_COMPILATION_CACHE DISABLE_TIMING_CACHE
            DISTRIBUTIVE_INDEPENDENCE EDITABLE_TIMING_CACHE ERROR_ON_TIMING_CACHE_MISS
            EXCLUDE_LEAN_RUNTIME FP16 FP4 FP8 GPU_FALLBACK INT4 INT8 MONITOR_MEMORY
            OBEY_PRECISION_CONSTRAINTS PREFER_PRECISION_CONSTRAINTS REFIT REFIT_IDENTICAL
            REFIT_INDIVIDUAL REJECT_EMPTY_ALGORITHMS SAFETY_SCOPE SPARSE_WEIGHTS STRICT_NANS
            STRIP_PLAN TF32 VERSION_COMPATIBLE WEIGHTLESS WEIGHT_STREAMING
        """,
        "MemoryPoolType": """
            DLA_GLOBAL_DRAM DLA_LOCAL_DRAM DLA_MANAGED_SRAM TACTIC_DRAM TACTIC_SHARED_MEMORY
            WORKSPACE
        """,
        "ProfilingVerbosity": """
            DETAILED LAYER_NAMES_ONLY NONE
        """,
        "LayerInformationFormat": """
            JSON ONELINE
        """,
        "TensorIOMode": """
            INPUT NONE OUTPUT
        """,
        "DataType": """
            BF16 BOOL E8M0 FLOAT FP4 FP8 HALF INT32 INT4 INT64 INT8 UINT8
        """,
    },
    11: {
        "Builder": """
            build_engine_with_config build_serialized_network build_serialized_network_to_stream
            create_builder_config create_network create_optimization_profile error_recorder
            get_plugin_registry gpu_allocator is_network_supported logger max_DLA_batch_size
            max_threads num_DLA_cores reset
        """,
        "IBuilderConfig": """
            DLA_core add_optimization_profile all_build_routes avg_timing_iterations build_route
            builder_optimization_level can_run_on_DLA clear_flag create_timing_cache
            default_device_type engine_capability flags get_device_type get_flag
            get_memory_pool_limit get_preview_feature get_tactic_sources get_timing_cache
            hardware_compatibility_level is_device_type_set l2_limit_for_tiling max_aux_streams
            max_num_tactics num_optimization_profiles plugins_to_serialize profile_stream
            profiling_verbosity progress_monitor remote_auto_tuning_config reset reset_device_type
            runtime_platform set_device_type set_flag set_memory_pool_limit set_preview_feature
            set_tactic_sources set_timing_cache tiling_optimization_level
        """,
        "OnnxParser": """
            clear_errors clear_flag flags get_error get_flag get_layer_output_tensor
            get_subgraph_nodes get_used_vc_plugin_libraries is_subgraph_supported load_initializer
            load_model_proto num_errors num_subgraphs parse parse_from_file parse_model_proto
            set_builder_config set_flag supports_model_v2 supports_operator
        """,
        "ParserError": """
            code desc file func line local_function_stack local_function_stack_size node node_name
            node_operator
        """,
        "Runtime": """
            DLA_core deserialize_cuda_engine engine_host_code_allowed error_recorder
            get_plugin_registry gpu_allocator load_runtime logger max_threads num_DLA_cores
            tempfile_control_flags temporary_directory
        """,
        "ICudaEngine": """
            create_engine_inspector create_execution_context create_runtime_config
            create_serialization_config device_memory_size_v2 engine_capability error_recorder
            get_aliased_input_tensor get_device_memory_size_for_profile_v2 get_engine_stat
            get_tensor_bytes_per_component get_tensor_components_per_element get_tensor_dtype
            get_tensor_format get_tensor_format_desc get_tensor_location get_tensor_mode
            get_tensor_name get_tensor_profile_shape get_tensor_profile_values get_tensor_shape
            get_tensor_vectorized_dim get_weight_streaming_automatic_budget
            hardware_compatibility_level is_debug_tensor is_shape_inference_io name num_aux_streams
            num_io_tensors num_layers num_optimization_profiles profiling_verbosity refittable
            serialize serialize_with_config streamable_weights_size tactic_sources
            weight_streaming_budget_v2 weight_streaming_scratch_memory_size
        """,
        "IExecutionContext": """
            active_optimization_profile all_binding_shapes_specified debug_sync device_memory engine
            enqueue_emits_profile error_recorder execute_async_v3 execute_v2 get_debug_listener
            get_debug_state get_input_consumed_event get_max_output_size get_output_allocator
            get_runtime_config get_tensor_address get_tensor_shape get_tensor_strides infer_shapes
            name nvtx_verbosity persistent_cache_limit profiler report_to_profiler
            set_all_tensors_debug_state set_aux_streams set_communicator set_debug_listener
            set_device_memory set_input_consumed_event set_input_shape
            set_optimization_profile_async set_output_allocator set_tensor_address
            set_tensor_debug_state temporary_allocator unfused_tensors_debug_state
            update_device_memory_size_for_shapes
        """,
        "IOptimizationProfile": """
            extra_memory_target get_shape get_shape_input set_shape set_shape_input
        """,
        "ITimingCache": """
            combine query queryKeys reset serialize update
        """,
        "EngineInspector": """
            error_recorder execution_context get_engine_information get_layer_information
        """,
        "Severity": """
            ERROR INFO INTERNAL_ERROR VERBOSE WARNING
        """,
        "NetworkDefinitionCreationFlag": """
            PREFER_AOT_PYTHON_PLUGINS PREFER_JIT_PYTHON_PLUGINS STRONGLY_TYPED
        """,
        "BuilderFlag": """
            DEBUG DIRECT_IO DISABLE_COMPILATION_CACHE DISABLE_TIMING_CACHE DISTRIBUTIVE_INDEPENDENCE
            EDITABLE_TIMING_CACHE ERROR_ON_TIMING_CACHE_MISS EXCLUDE_LEAN_RUNTIME GPU_FALLBACK
            MONITOR_MEMORY REFIT REFIT_IDENTICAL REFIT_INDIVIDUAL SAFETY_SCOPE SPARSE_WEIGHTS
            STRICT_NANS STRIP_PLAN TF32 VERSION_COMPATIBLE WEIGHT_STREAMING
        """,
        "MemoryPoolType": """
            DLA_GLOBAL_DRAM DLA_LOCAL_DRAM DLA_MANAGED_SRAM TACTIC_DRAM TACTIC_SHARED_MEMORY
            WORKSPACE
        """,
        "ProfilingVerbosity": """
            DETAILED LAYER_NAMES_ONLY NONE
        """,
        "LayerInformationFormat": """
            JSON ONELINE
        """,
        "TensorIOMode": """
            INPUT NONE OUTPUT
        """,
        "DataType": """
            BF16 BOOL E8M0 FLOAT FP4 FP8 HALF INT32 INT4 INT64 INT8 UINT8
        """,
    },
}

# Enum values that reach TensorRT as numbers (NvInfer.h at the same tags): network creation
# flags are passed as a bit mask, 1 << int(flag), and STRONGLY_TYPED moved from 1 to 0 in 11.
ENUM_VALUES: dict[int, dict[str, dict[str, int]]] = {
    10: {
        "NetworkDefinitionCreationFlag": {
            "EXPLICIT_BATCH": 0,
            "STRONGLY_TYPED": 1,
            "PREFER_JIT_PYTHON_PLUGINS": 2,
            "PREFER_AOT_PYTHON_PLUGINS": 3,
        }
    },
    11: {
        "NetworkDefinitionCreationFlag": {
            "STRONGLY_TYPED": 0,
            "PREFER_JIT_PYTHON_PLUGINS": 1,
            "PREFER_AOT_PYTHON_PLUGINS": 2,
        }
    },
}

API: dict[int, dict[str, frozenset[str]]] = {
    major: {name: frozenset(text.split()) for name, text in table.items()}
    for major, table in _RAW.items()
}


def members(major: int, name: str) -> frozenset[str]:
    """The names `name` (a class or enum) has in TensorRT `major`."""
    return API[major][name]
