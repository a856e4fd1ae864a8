// macOS sinks of the profiler (compiled only on Apple builds; NOT RUN YET --
// there is no Mac in this project's CI; syntax-checked by tools/check_objc.py).
//
// os_signpost: subsystem "com.mps_ext.profiler", one log (category) per event
// kind -- "operations", "copies", "fallbacks", "compiles". Signpost names are
// the kind ("operation", ...); the message carries the op name, graph key,
// input shapes, run count, cache hit and CPU/GPU ms. Intervals in "interval"
// mode, events in "event" mode, so Instruments' os_signpost instrument (or the
// Logging template) shows them next to the GPU timeline.
//
// GPU time (wait_until_completed=True, ops on the Metal runtime): a completed
// handler on the MPS stream's command buffer, added before the op encodes,
// reads MTLCommandBuffer.GPUStartTime/GPUEndTime; the op then waits for the
// stream (COMMIT_AND_WAIT), as torch.mps.profiler does.
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#import <ATen/mps/MPSStream.h>

#include <os/log.h>
#include <os/signpost.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <sstream>

#include "profiler/profiler.h"
#include "runtime/runtime.h"

namespace mps_ext::profiler {
namespace {
constexpr const char* kSubsystem = "com.mps_ext.profiler";

struct Logs {
  // os_log_create: macOS 10.12
  os_log_t operations = os_log_create(kSubsystem, "operations");
  os_log_t copies = os_log_create(kSubsystem, "copies");
  os_log_t fallbacks = os_log_create(kSubsystem, "fallbacks");
  os_log_t compiles = os_log_create(kSubsystem, "compiles");
};

os_log_t log_for(Kind k) {
  static Logs* logs = new Logs();  // leaked: used until exit
  switch (k) {
    case Kind::Operation: return logs->operations;
    case Kind::Copy: return logs->copies;
    case Kind::Fallback: return logs->fallbacks;
    case Kind::Compile: return logs->compiles;
  }
  return logs->operations;
}

std::string shapes(const Event& e) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < e.inputs.size(); ++i) {
    os << (i ? ", " : "") << c10::getDtypeNames(e.inputs[i].dtype).first << '[';
    for (size_t d = 0; d < e.inputs[i].shape.size(); ++d) os << (d ? "," : "") << e.inputs[i].shape[d];
    os << ']';
  }
  os << ']';
  return os.str();
}

std::string begin_message(const Event& e) {
  std::ostringstream os;
  os << e.name;
  if (!e.graph_key.empty()) os << " key=" << e.graph_key;
  if (!e.runtime.empty()) os << " runtime=" << e.runtime;
  if (e.bytes >= 0) os << " bytes=" << e.bytes;
  os << " inputs=" << shapes(e);
  return os.str();
}

std::string end_message(const Event& e) {
  std::ostringstream os;
  os << e.name;
  if (e.run_count > 0) os << " run=" << e.run_count;
  if (e.cache_hit >= 0) os << (e.cache_hit ? " cache=hit" : " cache=compiled");
  if (e.bytes >= 0) os << " bytes=" << e.bytes;
  char ms[64];
  std::snprintf(ms, sizeof ms, " cpu=%.3fms", static_cast<double>(e.cpu_end_ns - e.cpu_start_ns) / 1e6);
  os << ms;
  if (e.gpu_ms >= 0) {
    std::snprintf(ms, sizeof ms, " gpu=%.3fms", e.gpu_ms);
    os << ms;
  }
  return os.str();
}

// Signpost names must be string literals: one per kind. (os_signpost_*:
// macOS 10.14; "%{public}s" keeps the message readable outside the process.)
#define MPS_EXT_SIGNPOST_BY_KIND(EMIT, kind, log, id, msg)            \
  switch (kind) {                                                      \
    case Kind::Operation: EMIT(log, id, "operation", "%{public}s", msg); break; \
    case Kind::Copy: EMIT(log, id, "copy", "%{public}s", msg); break;           \
    case Kind::Fallback: EMIT(log, id, "fallback", "%{public}s", msg); break;   \
    case Kind::Compile: EMIT(log, id, "compile", "%{public}s", msg); break;     \
  }

class SignpostSink final : public PlatformSink {
 public:
  uint64_t begin(const Event& e) override {
    os_log_t log = log_for(e.kind);
    if (!os_signpost_enabled(log)) return OS_SIGNPOST_ID_NULL;  // no recorder attached
    os_signpost_id_t id = os_signpost_id_generate(log);
    std::string msg = begin_message(e);
    MPS_EXT_SIGNPOST_BY_KIND(os_signpost_interval_begin, e.kind, log, id, msg.c_str());
    return id;
  }

  void end(const Event& e, uint64_t token) override {
    if (token == OS_SIGNPOST_ID_NULL) return;
    os_log_t log = log_for(e.kind);
    std::string msg = end_message(e);
    MPS_EXT_SIGNPOST_BY_KIND(os_signpost_interval_end, e.kind, log, token, msg.c_str());
  }

  void instant(const Event& e) override {
    os_log_t log = log_for(e.kind);
    if (!os_signpost_enabled(log)) return;
    std::string msg = begin_message(e) + " |" + end_message(e).substr(e.name.size());
    MPS_EXT_SIGNPOST_BY_KIND(os_signpost_event_emit, e.kind, log, os_signpost_id_generate(log), msg.c_str());
  }
};

// Filled by the command buffer's completed handler (another thread).
struct GpuTiming {
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
  double gpu_ms = -1;
};

class MetalGpuTimer final : public GpuTimer {
 public:
  void* begin(const at::Tensor& any_input) override {
    c10::DeviceType dev = any_input.device().type();
    bool on_metal = dev == c10::DeviceType::MPS ||
                    (dev == c10::DeviceType::PrivateUse1 && runtime::device_runtime() == runtime::Kind::MPSGraph);
    if (!on_metal) return nullptr;
    at::mps::MPSStream* stream = at::mps::getCurrentMPSStream();
    // Earlier work must not count: drain it, so the op starts a fresh buffer.
    at::mps::dispatch_sync_with_rethrow(stream->queue(), ^() {
      stream->synchronize(at::mps::SyncType::COMMIT_AND_WAIT);
    });
    auto timing = std::make_shared<GpuTiming>();
    std::shared_ptr<GpuTiming> captured = timing;
    stream->addCompletedHandler(^(id<MTLCommandBuffer> cb) {
      double ms = (cb.GPUEndTime - cb.GPUStartTime) * 1000.0;  // macOS 10.15
      std::lock_guard<std::mutex> lock(captured->mutex);
      captured->gpu_ms = ms >= 0 ? ms : -1;
      captured->done = true;
      captured->done_cv.notify_all();
    });
    return new std::shared_ptr<GpuTiming>(std::move(timing));
  }

  double end(void* token) override {
    std::unique_ptr<std::shared_ptr<GpuTiming>> owned(static_cast<std::shared_ptr<GpuTiming>*>(token));
    at::mps::MPSStream* stream = at::mps::getCurrentMPSStream();
    at::mps::dispatch_sync_with_rethrow(stream->queue(), ^() {
      stream->synchronize(at::mps::SyncType::COMMIT_AND_WAIT);
    });
    GpuTiming& t = **owned;
    std::unique_lock<std::mutex> lock(t.mutex);
    // The handler runs on Metal's thread, possibly just after the wait returns.
    t.done_cv.wait_for(lock, std::chrono::seconds(5), [&] { return t.done; });
    return t.done ? t.gpu_ms : -1;
  }
};

[[maybe_unused]] const bool registered = [] {
  set_platform_sink(new SignpostSink());  // leaked: lives for the process
  set_gpu_timer(new MetalGpuTimer());
  return true;
}();
}  // namespace
}  // namespace mps_ext::profiler
