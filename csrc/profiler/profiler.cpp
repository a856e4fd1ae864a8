// The profiler's sessions, the in-memory recorder and the Chrome trace writer.
// Everything here runs only while a session is active (see profiler.h).
#include "profiler/profiler.h"

#include <ATen/record_function.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#if defined(__APPLE__)
#include <pthread.h>
#elif defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "runtime/runtime.h"

namespace mps_ext::profiler {

std::atomic<uint32_t> g_state{0};

namespace {
struct Session {
  std::mutex mutex;
  bool active = false;
  uint64_t generation = 0;  // events opened in an older session are dropped
  int64_t start_ns = 0;
  std::string trace_file;
  std::vector<Event> events;
  std::unordered_map<std::string, int64_t> runs;  // graph key -> runs this session
  // Long runs (MPS_EXT_PROFILE) must not grow memory without bound: past
  // max_events the recorder drops (the os_signpost sink still emits).
  int64_t max_events = 0;
  int64_t dropped = 0;
};

int64_t max_events_from_env() {
  const char* v = std::getenv("MPS_EXT_PROFILE_MAX_EVENTS");
  if (!v || !*v) return 1'000'000;
  char* end = nullptr;
  long long n = std::strtoll(v, &end, 10);
  TORCH_CHECK_VALUE(end && *end == '\0' && n > 0, "MPS_EXT_PROFILE_MAX_EVENTS must be a positive integer, but got '",
                    v, "'");
  return n;
}

Session& session() {
  static Session* s = new Session();  // leaked: scopes may close during static destruction
  return *s;
}

std::atomic<PlatformSink*> g_sink{nullptr};
std::atomic<GpuTimer*> g_gpu{nullptr};
std::atomic<uint32_t> g_next_thread_index{1};

uint64_t os_thread_id() {
#if defined(__APPLE__)
  uint64_t tid = 0;
  pthread_threadid_np(nullptr, &tid);
  return tid;
#elif defined(__linux__)
  return static_cast<uint64_t>(::syscall(SYS_gettid));
#else
  return std::hash<std::thread::id>()(std::this_thread::get_id());
#endif
}

struct ThreadInfo {
  uint64_t id = os_thread_id();
  uint32_t index = g_next_thread_index.fetch_add(1);
};
thread_local ThreadInfo t_thread;
}  // namespace

namespace detail {
struct Active {
  Event event;
  uint32_t mode = 0;
  uint64_t generation = 0;
  uint64_t sink_token = 0;
  bool sink_open = false;
  void* gpu_token = nullptr;
  Active* parent_op = nullptr;  // ops nest (an op's backward calls ops)
};
}  // namespace detail

namespace {
using detail::Active;
thread_local Active* t_current_op = nullptr;

Active* open(Kind kind, std::string name) {
  uint32_t mode = state();
  if (mode == 0) return nullptr;  // the session ended since the caller looked
  auto* a = new Active();
  a->mode = mode;
  {
    Session& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    a->generation = s.generation;
  }
  a->event.kind = kind;
  a->event.name = std::move(name);
  a->event.thread_id = t_thread.id;
  a->event.thread_index = t_thread.index;
  return a;
}

// Begins the interval: the clock starts last, so setup is not counted.
Active* begin(Active* a) {
  if (!a) return a;
  PlatformSink* sink = g_sink.load();
  if (sink && (a->mode & kInterval)) {
    a->sink_token = sink->begin(a->event);
    a->sink_open = true;
  }
  a->event.cpu_start_ns = now_ns();
  return a;
}

std::string op_name(const std::string& key) {
  std::string name = key.substr(0, key.find_first_of("|("));
  return name.find("::") == std::string::npos ? "mps_ext::" + name : name;
}

const char* device_name(c10::DeviceType t) {
  switch (t) {
    case c10::DeviceType::CPU: return "cpu";
    case c10::DeviceType::MPS: return "mps";
    case c10::DeviceType::PrivateUse1: return "mpsgraph";
    default: return "other";
  }
}
}  // namespace

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Operation: return "operation";
    case Kind::Copy: return "copy";
    case Kind::Fallback: return "fallback";
    case Kind::Compile: return "compile";
  }
  return "?";
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

TensorInfo tensor_info(const at::Tensor& t) {
  return {t.sizes().vec(), t.scalar_type(), t.device().type()};
}

namespace detail {
Active* open_op(const std::string& key, c10::ArrayRef<at::Tensor> inputs) {
  std::unique_ptr<Active> owned(open(Kind::Operation, op_name(key)));
  Active* a = owned.get();
  if (!a) return a;
  Event& e = a->event;
  e.graph_key = key;
  e.cache_hit = 1;  // a CompileScope inside marks a miss
  for (const at::Tensor& t : inputs)
    if (t.defined()) e.inputs.push_back(tensor_info(t));
  // The runtime run_graph picks: the first input's device that is not a 0-d CPU scalar.
  const at::Tensor* decides = inputs.empty() ? nullptr : &inputs[0];
  for (const at::Tensor& t : inputs)
    if (t.defined() && (!t.is_cpu() || t.dim() > 0)) {
      decides = &t;
      break;
    }
  if (decides && decides->defined()) {
    try {
      e.runtime = runtime::kind_name(runtime::runtime_for(decides->device()));
    } catch (const c10::Error&) {  // run_graph itself reports a bad device
    }
  }
  GpuTimer* gpu = g_gpu.load();
  if (gpu && (a->mode & kWait) && decides && decides->defined()) a->gpu_token = gpu->begin(*decides);
  a->parent_op = t_current_op;
  t_current_op = owned.release();
  return begin(a);
}

Active* open_copy(const at::Tensor& src, const at::Tensor& dst) {
  std::unique_ptr<Active> a(open(Kind::Copy, std::string("copy ") + device_name(src.device().type()) + "->" +
                                                 device_name(dst.device().type())));
  if (!a) return nullptr;
  a->event.inputs.push_back(tensor_info(src));
  a->event.bytes = static_cast<int64_t>(dst.numel()) * static_cast<int64_t>(dst.element_size());
  return begin(a.release());
}

Active* open_fallback(const std::string& op, c10::ArrayRef<at::Tensor> inputs) {
  std::unique_ptr<Active> a(open(Kind::Fallback, op));
  if (!a) return nullptr;
  for (const at::Tensor& t : inputs)
    if (t.defined()) a->event.inputs.push_back(tensor_info(t));
  return begin(a.release());
}

void close(Active* a) {
  std::unique_ptr<Active> owned(a);
  Event& e = a->event;
  if (e.kind == Kind::Operation) {
    t_current_op = a->parent_op;
    if (a->gpu_token) e.gpu_ms = g_gpu.load()->end(a->gpu_token);
  }
  e.cpu_end_ns = now_ns();
  PlatformSink* sink = g_sink.load();
  Session& s = session();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.active || s.generation != a->generation) return;  // the session ended meanwhile
    if (e.kind == Kind::Operation) e.run_count = ++s.runs[e.graph_key];
    auto room = [&s] {
      if (static_cast<int64_t>(s.events.size()) < s.max_events) return true;
      ++s.dropped;
      return false;
    };
    if ((a->mode & kInterval) && room()) s.events.push_back(e);
    if ((a->mode & kEvent) && room()) {
      s.events.push_back(e);
      Event& instant = s.events.back();
      instant.instant = true;
      instant.cpu_start_ns = instant.cpu_end_ns;
    }
  }
  if (sink) {
    if (a->sink_open) sink->end(e, a->sink_token);
    if (a->mode & kEvent) sink->instant(e);
  }
}
}  // namespace detail

CompileScope::CompileScope() {
#ifdef MPS_EXT_NO_PROFILER_HOOKS
  return;
#endif
  if (state() != 0) [[unlikely]] {
    Active* op = t_current_op;
    active_ = open(Kind::Compile, "compile " + (op ? op->event.name : std::string("graph")));
    if (active_) {
      if (op) {
        op->event.cache_hit = 0;
        active_->event.graph_key = op->event.graph_key;
        active_->event.runtime = op->event.runtime;
        active_->event.inputs = op->event.inputs;
      }
      begin(active_);
    }
  }
  // torch.profiler: ops already appear by name (the dispatcher records them);
  // the compile inside an op is ours to name.
  auto rf = std::make_unique<at::RecordFunction>(at::RecordScope::USER_SCOPE);
  if (rf->isActive()) {
    rf->before("mps_ext::compile");
    record_function_ = rf.release();
  }
}

CompileScope::~CompileScope() { delete static_cast<at::RecordFunction*>(record_function_); }

// --- sessions -------------------------------------------------------------------
void start(uint32_t mode, const std::string& trace_file) {
  TORCH_CHECK_VALUE((mode & (kInterval | kEvent)) != 0 && (mode & ~(kInterval | kEvent | kWait)) == 0,
                    "mps_ext.profiler.start(): mode must include 'interval' and/or 'event'");
  int64_t max_events = max_events_from_env();
  Session& s = session();
  std::lock_guard<std::mutex> lock(s.mutex);
  TORCH_CHECK(!s.active, "mps_ext.profiler.start(): a profiling session is already active; "
              "call mps_ext.profiler.stop() first");
  s.active = true;
  s.max_events = max_events;
  s.dropped = 0;
  ++s.generation;
  s.events.clear();
  s.runs.clear();
  s.trace_file = trace_file;
  s.start_ns = now_ns();
  g_state.store(mode, std::memory_order_release);
}

void stop() {
  std::string trace_file;
  {
    Session& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    TORCH_CHECK(s.active, "mps_ext.profiler.stop(): no profiling session is active; "
                "call mps_ext.profiler.start() first");
    g_state.store(0, std::memory_order_release);
    s.active = false;
    trace_file = s.trace_file;
  }
  if (!trace_file.empty()) write_chrome_trace(trace_file);
}

int64_t dropped() {
  Session& s = session();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.dropped;
}

bool active() {
  Session& s = session();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.active;
}

std::vector<Event> events() {
  Session& s = session();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.events;
}

void set_platform_sink(PlatformSink* sink) { g_sink.store(sink); }
void set_gpu_timer(GpuTimer* timer) { g_gpu.store(timer); }

// --- Chrome trace -----------------------------------------------------------------
namespace {
void json_string(std::ostream& os, const std::string& s) {
  os << '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': os << "\\\""; break;
      case '\\': os << "\\\\"; break;
      case '\n': os << "\\n"; break;
      case '\t': os << "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          os << buf;
        } else {
          os << c;
        }
    }
  }
  os << '"';
}

std::string describe(const TensorInfo& t) {
  std::ostringstream os;
  os << c10::getDtypeNames(t.dtype).first << '[';
  for (size_t i = 0; i < t.shape.size(); ++i) os << (i ? ", " : "") << t.shape[i];
  os << "] " << device_name(t.device);
  return os.str();
}

// One track per thread for operations (compiles nest inside them); copies and
// fallbacks of that thread get tracks of their own.
int track_of(Kind k) { return k == Kind::Copy ? 1 : k == Kind::Fallback ? 2 : 0; }
const char* track_name(int track) { return track == 1 ? "copies" : track == 2 ? "fallbacks" : "operations"; }

void micros(std::ostream& os, int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ns) / 1000.0);
  os << buf;
}
}  // namespace

std::string chrome_trace_json() {
  std::vector<Event> evs;
  int64_t t0, dropped_events;
  {
    Session& s = session();
    std::lock_guard<std::mutex> lock(s.mutex);
    evs = s.events;
    t0 = s.start_ns;
    dropped_events = s.dropped;
  }
  const long pid = 1;
  std::ostringstream os;
  os << "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"producer\": \"mps_ext.profiler\", \"dropped_events\": "
     << dropped_events << "},\n\"traceEvents\": [\n";
  os << R"({"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "mps_ext"}})";
  std::unordered_map<int64_t, bool> named;
  for (const Event& e : evs) {
    int64_t tid = static_cast<int64_t>(e.thread_index) * 10 + track_of(e.kind);
    if (!named[tid]) {
      named[tid] = true;
      os << ",\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": " << pid << ", \"tid\": " << tid
         << ", \"args\": {\"name\": ";
      json_string(os, "thread " + std::to_string(e.thread_index) + " (tid " + std::to_string(e.thread_id) +
                          "): " + track_name(track_of(e.kind)));
      os << "}}";
      os << ",\n{\"name\": \"thread_sort_index\", \"ph\": \"M\", \"pid\": " << pid << ", \"tid\": " << tid
         << ", \"args\": {\"sort_index\": " << tid << "}}";
    }
    os << ",\n{\"name\": ";
    json_string(os, e.name);
    os << ", \"cat\": \"" << kind_name(e.kind) << "\", \"ph\": \"" << (e.instant ? "i" : "X") << "\", \"ts\": ";
    micros(os, e.cpu_start_ns - t0);
    if (e.instant) os << ", \"s\": \"t\"";
    else {
      os << ", \"dur\": ";
      micros(os, e.cpu_end_ns - e.cpu_start_ns);
    }
    os << ", \"pid\": " << pid << ", \"tid\": " << tid << ", \"args\": {";
    os << "\"thread_id\": " << e.thread_id;
    if (!e.graph_key.empty()) {
      os << ", \"graph_key\": ";
      json_string(os, e.graph_key);
    }
    if (!e.runtime.empty()) os << ", \"runtime\": \"" << e.runtime << "\"";
    if (e.cache_hit >= 0) os << ", \"cache_hit\": " << (e.cache_hit ? "true" : "false");
    if (e.run_count > 0) os << ", \"run_count\": " << e.run_count;
    if (e.bytes >= 0) os << ", \"bytes\": " << e.bytes;
    if (e.gpu_ms >= 0) os << ", \"gpu_ms\": " << e.gpu_ms;
    os << ", \"inputs\": [";
    for (size_t i = 0; i < e.inputs.size(); ++i) {
      if (i) os << ", ";
      json_string(os, describe(e.inputs[i]));
    }
    os << "]}}";
  }
  os << "\n]}\n";
  return os.str();
}

void write_chrome_trace(const std::string& path) {
  std::string json = chrome_trace_json();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  TORCH_CHECK(f.good(), "mps_ext.profiler: cannot write trace_file '", path, "'");
  f << json;
  f.close();
  TORCH_CHECK(f.good(), "mps_ext.profiler: error writing trace_file '", path, "'");
}

}  // namespace mps_ext::profiler
