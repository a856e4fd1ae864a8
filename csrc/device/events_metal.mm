// Events of the mpsgraph device on Apple builds: the mpsgraph runtime encodes
// onto PyTorch's MPS stream, so an event is one of PyTorch's MPS events (an
// MTLSharedEvent signalled on that stream; its completion handler stamps the
// time elapsed_time reads). Host-clock events of the reference build:
// events.cpp.
//
// Not run yet (no Mac in CI): syntax-checked by tools/check_objc.py.
#include <condition_variable>  // MPSEvent.h uses it without including it

#import <ATen/mps/MPSEvent.h>

#include <c10/util/Exception.h>

#include "device/device.h"

namespace mps_ext::device::events {
namespace {
struct Event {
  bool timing = false;
  bool recorded = false;
  uint64_t id = 0;  // PyTorch's MPS event id
};

Event* as_event(void* e) { return static_cast<Event*>(e); }
}  // namespace

void* create(bool timing) {
  auto* e = new Event();
  e->timing = timing;
  e->id = at::mps::getMPSEventPool()->acquireEvent(timing);
  return e;
}

void record(void* event) {
  Event* e = as_event(event);
  at::mps::getMPSEventPool()->recordEvent(e->id, /*syncEvent=*/true);
  e->recorded = true;
}

void block(void* event) {
  Event* e = as_event(event);
  if (e->recorded) at::mps::getMPSEventPool()->waitForEvent(e->id, /*syncEvent=*/false);
}

bool query(void* event) {
  Event* e = as_event(event);
  return e == nullptr || !e->recorded || at::mps::getMPSEventPool()->queryEvent(e->id);
}

void synchronize(void* event) {
  Event* e = as_event(event);
  if (e != nullptr && e->recorded) at::mps::getMPSEventPool()->synchronizeEvent(e->id);
}

double elapsed_ms(void* start, void* end) {
  Event *a = as_event(start), *b = as_event(end);
  TORCH_CHECK_VALUE(a && b && a->timing && b->timing, "Both events must be created with argument 'enable_timing=True'.");
  TORCH_CHECK_VALUE(a->recorded && b->recorded, "Both events must be recorded before calculating elapsed time.");
  return at::mps::getMPSEventPool()->elapsedTime(a->id, b->id);
}

void destroy(void* event) noexcept {
  Event* e = as_event(event);
  if (e == nullptr) return;
  try {
    at::mps::getMPSEventPool()->releaseEvent(e->id);
  } catch (...) {
  }
  delete e;
}

}  // namespace mps_ext::device::events
