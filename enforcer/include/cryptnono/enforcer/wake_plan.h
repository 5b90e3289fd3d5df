// The enforcer's half of the wake filter (bpf/wake_filter.h): which execs the probe wakes
// the kernel ring's holder for at once. The enforcer plans the filter from its banned
// strings (each build of the matcher carries its plan) and writes it into the probe's map,
// whose fd comes with the kernel ring. The execs the filter rules out wait in the ring for
// the enforcer's batch timer (--ring-batch-ms).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cryptnono/result.h"
#include "wake_filter.h"

namespace cryptnono::enforcer {

struct WakePlan {
  bool on = false;      // false: every exec wakes the holder (why_off says why)
  std::string why_off;
  uint32_t gram = 0;    // bytes per gram
  uint32_t stride = 0;  // the probe looks up every stride-th offset
  uint32_t strings = 0;
  uint32_t bits_log2 = 0;      // the filter has 2^bits_log2 bits
  std::vector<uint64_t> bits;  // 2^bits_log2 / 64 words when on

  std::string describe() const;
};

// The plan for `banned` (casefolded, as the matcher holds them). Off when a string has no
// run of WAKE_GRAM_MIN plain bytes (wake_plain_byte); else the longest gram and stride that
// every string's longest run allows (gram + stride - 1 bytes), up to 8 and 4, in a filter of
// 128 bits per gram or more (a gram sets 2: a lookup of another hits with p < 0.03%), at least
// 2^WAKE_FILTER_BITS_LOG2_MIN and at most 2^WAKE_FILTER_BITS_LOG2 bits.
class WakePlanner {
 public:
  void add(std::string_view banned);
  WakePlan finish();

 private:
  struct Run {
    uint32_t string;
    uint32_t offset;
    uint32_t length;
  };
  std::vector<std::string> strings_;
  std::vector<Run> runs_;
  uint32_t shortest_ = UINT32_MAX;
  uint32_t shortest_index_ = 0;
};

// What the probe decides for an exec of `filename` with the argv area `argv` (NUL after
// each argument), by the same arithmetic (bpf/exec.bpf.c, wake_now): true when it wakes the
// holder. For tests and benchmarks; the probe itself is tested against the real kernel.
bool wake_filter_hits(const WakePlan& plan, std::string_view filename, std::string_view argv);

// The probe's wake filter map, mapped read-write by the kernel ring's holder.
class WakeFilterMap {
 public:
  // Takes `fd` over (closed with this object). Fails unless it is a wake filter map.
  static Result<std::unique_ptr<WakeFilterMap>> map(int fd);
  ~WakeFilterMap();
  WakeFilterMap(const WakeFilterMap&) = delete;
  WakeFilterMap& operator=(const WakeFilterMap&) = delete;

  // Writes `plan` under the sequence count: the probe wakes the holder for every exec it
  // looks at meanwhile.
  void write(const WakePlan& plan);
  void turn_off();
  bool on() const;

 private:
  WakeFilterMap() = default;
  int fd_ = -1;
  wake_filter* filter_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace cryptnono::enforcer
