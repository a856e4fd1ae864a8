// Events of the mpsgraph device (the guard's record/block/query/synchronize/
// elapsedTime, so torch.Event, torch.mpsgraph.Event and autograd's
// cross-stream syncs work). Apple builds: events_metal.mm.
//
// Reference runtime: every op has finished when it returns (the host is the
// device), so recording an event stamps the host clock; that stamp is when
// all work before it completed, and elapsed_time between two stamps is real
// time. Events are always complete; waiting is a no-op.
#include <c10/util/Exception.h>

#include <chrono>
#include <cstdint>

#include "device/device.h"

namespace mps_ext::device::events {
#ifndef MPS_EXT_WITH_MPSGRAPH
namespace {
struct Event {
  bool timing = false;
  bool recorded = false;
  int64_t host_ns = 0;  // when it was recorded
};

Event* as_event(void* e) { return static_cast<Event*>(e); }
}  // namespace

void* create(bool timing) {
  auto* e = new Event();
  e->timing = timing;
  return e;
}

void record(void* event) {
  Event* e = as_event(event);
  e->host_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now().time_since_epoch()).count();
  e->recorded = true;
}

void block(void*) {}  // one in-order host executor: later work already follows the event

bool query(void*) { return true; }

void synchronize(void*) {}

double elapsed_ms(void* start, void* end) {
  Event *a = as_event(start), *b = as_event(end);
  TORCH_CHECK_VALUE(a && b && a->timing && b->timing, "Both events must be created with argument 'enable_timing=True'.");
  TORCH_CHECK_VALUE(a->recorded && b->recorded, "Both events must be recorded before calculating elapsed time.");
  return static_cast<double>(b->host_ns - a->host_ns) / 1e6;
}

void destroy(void* event) noexcept { delete as_event(event); }
#endif
}  // namespace mps_ext::device::events
