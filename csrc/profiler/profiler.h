// Profiling events: one small API that the runtime seam calls once per op
// (run_graph), per graph compile, per device copy and per CPU fallback; the
// sinks turn the same events into an in-memory list (mps_ext.profiler.events()),
// a Chrome/Perfetto trace JSON, and os_signposts for Instruments on macOS.
//
// Cost when no profiler is active: the scopes below do ONE relaxed atomic load
// (state()) in their constructor and nothing else; the destructor tests a
// member. Nothing is built, timed or locked. Building with
// -DMPS_EXT_PROFILER_HOOKS=OFF (CMake) compiles the hooks out: only
// benchmarks/bench_profiler.py uses that, as the baseline of the overhead.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mps_ext::profiler {

// Session state bits; 0 = no session (the hot-path test).
enum : uint32_t {
  kInterval = 1u << 0,  // begin/end intervals (os_signpost intervals, Chrome "X")
  kEvent = 1u << 1,     // one instant event per occurrence (os_signpost events, Chrome "i")
  kWait = 1u << 2,      // wait_until_completed: sync the device after each op (GPU time on a Mac)
};
extern std::atomic<uint32_t> g_state;
inline uint32_t state() { return g_state.load(std::memory_order_relaxed); }

enum class Kind : uint8_t { Operation, Copy, Fallback, Compile };
const char* kind_name(Kind k);

struct TensorInfo {
  std::vector<int64_t> shape;
  at::ScalarType dtype = at::ScalarType::Undefined;
  c10::DeviceType device = c10::DeviceType::CPU;
};

struct Event {
  Kind kind = Kind::Operation;
  bool instant = false;         // true: an "event" record (kEvent), else an interval
  std::string name;             // "mps_ext::softshrink", "aten::cumsum.out", "copy cpu->mpsgraph"
  std::string graph_key;        // operations and compiles: the cache key
  std::string runtime;          // "reference" / "mpsgraph" (operations, compiles)
  int cache_hit = -1;           // operations: 1 hit, 0 compiled now, -1 n/a
  int64_t run_count = 0;        // operations: runs of this graph key in the session, this one included
  std::vector<TensorInfo> inputs;
  int64_t bytes = -1;           // copies: bytes written to the destination
  int64_t cpu_start_ns = 0, cpu_end_ns = 0;  // steady clock
  double gpu_ms = -1;           // known only on a Mac with wait_until_completed
  uint64_t thread_id = 0;       // OS thread id (threading.get_native_id())
  uint32_t thread_index = 0;    // 1, 2, ... in order of first event (trace tracks)
};

int64_t now_ns();
TensorInfo tensor_info(const at::Tensor& t);

// --- sessions (mps_ext.profiler.start/stop) -----------------------------------
// start: mode bits kInterval|kEvent (+kWait); errors if a session is active.
void start(uint32_t mode, const std::string& trace_file);
// stop: ends the session, writes its trace file if one was given; errors if
// none is active. Events stay readable until the next start.
void stop();
bool active();
std::vector<Event> events();  // the current (or last) session's events, in end order
// Events the recorder did not keep: a session keeps at most
// MPS_EXT_PROFILE_MAX_EVENTS (default 1,000,000; read at start()).
int64_t dropped();
// A Chrome trace ("traceEvents" JSON) of the session's events.
std::string chrome_trace_json();
void write_chrome_trace(const std::string& path);

// --- platform sinks (registered at load time; macOS: signpost.mm) ------------
struct PlatformSink {
  virtual ~PlatformSink() = default;
  // At an interval's begin; returns a token passed back to end().
  virtual uint64_t begin(const Event& e) = 0;
  virtual void end(const Event& e, uint64_t token) = 0;
  virtual void instant(const Event& e) = 0;
};
void set_platform_sink(PlatformSink* sink);  // not owned; lives for the process

// GPU timing for wait_until_completed (macOS): begin() before an op runs,
// end() after; end() waits for the device and returns GPU ms (or -1).
struct GpuTimer {
  virtual ~GpuTimer() = default;
  virtual void* begin(const at::Tensor& any_input) = 0;  // nullptr: not timed
  virtual double end(void* token) = 0;
};
void set_gpu_timer(GpuTimer* timer);

// --- scopes: construct at the hook point --------------------------------------
namespace detail {
struct Active;  // the recorded state of one open scope
Active* open_op(const std::string& key, c10::ArrayRef<at::Tensor> inputs);
Active* open_copy(const at::Tensor& src, const at::Tensor& dst);
Active* open_fallback(const std::string& op, c10::ArrayRef<at::Tensor> inputs);
void close(Active* a);  // records and deletes
}  // namespace detail

class Scope {
 public:
  Scope() = default;
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  ~Scope() {
    if (active_) [[unlikely]] detail::close(active_);
  }

 protected:
  detail::Active* active_ = nullptr;
};

// runtime::run_graph: one operation interval. `graph_key` is the GraphSpec's
// key; its text up to the first '|' names the op.
class OpScope : public Scope {
 public:
  // `graph_key()` gives the key string; called only when profiling (the
  // readable key is built on demand).
  template <typename KeyFn>
  OpScope(KeyFn&& graph_key, c10::ArrayRef<at::Tensor> inputs) {
#ifndef MPS_EXT_NO_PROFILER_HOOKS
    if (state() != 0) [[unlikely]] active_ = detail::open_op(graph_key(), inputs);
#endif
  }
};

// The graph build + compile on a cache miss (nested in the OpScope, which it
// marks as a miss). Also a torch.profiler range "mps_ext::compile".
class CompileScope : public Scope {
 public:
  CompileScope();  // out of line: misses are rare
  ~CompileScope();

 private:
  void* record_function_ = nullptr;
};

// device copies (copy_from): bytes written to dst.
class CopyScope : public Scope {
 public:
  CopyScope(const at::Tensor& src, const at::Tensor& dst) {
#ifndef MPS_EXT_NO_PROFILER_HOOKS
    if (state() != 0) [[unlikely]] active_ = detail::open_copy(src, dst);
#endif
  }
};

// The CPU fallback of an aten op on the device; `inputs` are gathered by a
// callable (only when profiling).
class FallbackScope : public Scope {
 public:
  template <typename GatherInputs>
  FallbackScope(const std::string& op, GatherInputs&& gather) {
#ifndef MPS_EXT_NO_PROFILER_HOOKS
    if (state() != 0) [[unlikely]] active_ = detail::open_fallback(op, gather());
#endif
  }
};

}  // namespace mps_ext::profiler
