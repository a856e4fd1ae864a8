// What the mpsgraph device does not support, refused with an error that says
// so (instead of a dispatcher error about a 'Quantizedmpsgraph' backend).
//
// Quantized tensors (torch.quantize_per_tensor & co.): PyTorch's quantized
// tensor types have no mpsgraph storage. mps_ext's own quantization
// (mps_ext quantize/dequantize, quantized_matmul, QuantizedLinear) keeps plain
// integer tensors and does run on the device.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "device/device.h"

namespace mps_ext::device {
namespace {
[[noreturn]] void refuse_quantized(const c10::OperatorHandle& op, torch::jit::Stack*) {
  TORCH_CHECK_NOT_IMPLEMENTED(false, "mpsgraph: quantized tensors are not supported on the mpsgraph device (",
                              op.schema().operator_name(), "). Quantize on the CPU (x.cpu()), or keep integer "
                              "weights on the device with mps_ext's quantization ops.");
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  for (const char* op : {"quantize_per_tensor", "quantize_per_tensor.tensor_qparams", "quantize_per_tensor.tensors",
                         "quantize_per_tensor_dynamic", "quantize_per_channel"})
    m.impl(op, torch::CppFunction::makeFromBoxedFunction<&refuse_quantized>());
}

TORCH_LIBRARY_IMPL(_, QuantizedPrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&refuse_quantized>());
}

}  // namespace mps_ext::device
