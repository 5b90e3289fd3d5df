#include "cryptnono/enforcer/wake_plan.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace cryptnono::enforcer {

namespace {

uint64_t load_word(const char* p, size_t available) {
  uint64_t w = 0;
  std::memcpy(&w, p, std::min<size_t>(available, 8));  // little-endian, as the probe's load
  return w;
}

}  // namespace

std::string WakePlan::describe() const {
  if (!on) return "off (" + why_off + "): every exec wakes the enforcer";
  const size_t bytes = (size_t{1} << bits_log2) / 8;
  return "on: " + std::to_string(strings) + " banned strings as grams of " + std::to_string(gram) +
         " bytes looked up every " + std::to_string(stride) + " bytes (a filter of " +
         (bytes >= 1024 ? std::to_string(bytes / 1024) + " KiB)" : std::to_string(bytes) + " bytes)");
}

void WakePlanner::add(std::string_view banned) {
  // The longest run of plain bytes: its first grams go into the filter.
  uint32_t best_off = 0, best_len = 0;
  for (size_t i = 0; i < banned.size();) {
    if (!wake_plain_byte(static_cast<unsigned char>(banned[i]))) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < banned.size() && wake_plain_byte(static_cast<unsigned char>(banned[j]))) ++j;
    if (j - i > best_len) {
      best_off = static_cast<uint32_t>(i);
      best_len = static_cast<uint32_t>(j - i);
    }
    i = j;
  }
  const auto index = static_cast<uint32_t>(strings_.size());
  if (best_len < shortest_) {
    shortest_ = best_len;
    shortest_index_ = index;
  }
  strings_.emplace_back(banned);
  runs_.push_back({index, best_off, best_len});
}

WakePlan WakePlanner::finish() {
  WakePlan plan;
  plan.strings = static_cast<uint32_t>(strings_.size());
  if (!strings_.empty() && shortest_ < WAKE_GRAM_MIN) {
    std::string s = strings_[shortest_index_].substr(0, 64);
    plan.why_off = "the banned string '" + s + "' has no run of " + std::to_string(WAKE_GRAM_MIN) +
                   " characters other than spaces, quotes and non-ASCII";
    return plan;
  }
  const uint32_t min_run = strings_.empty() ? WAKE_GRAM_MAX + WAKE_STRIDE_MAX - 1 : shortest_;
  plan.gram = std::min<uint32_t>(WAKE_GRAM_MAX, min_run);
  plan.stride = std::clamp<uint32_t>(min_run - plan.gram + 1, 1, WAKE_STRIDE_MAX);
  const uint64_t want = uint64_t{128} * plan.stride * strings_.size();
  plan.bits_log2 = WAKE_FILTER_BITS_LOG2_MIN;
  while (plan.bits_log2 < WAKE_FILTER_BITS_LOG2 && (uint64_t{1} << plan.bits_log2) < want) ++plan.bits_log2;
  plan.bits.assign((size_t{1} << plan.bits_log2) / 64, 0);
  auto set = [&](uint32_t bit) { plan.bits[bit >> 6] |= uint64_t{1} << (bit & 63); };
  for (const Run& r : runs_) {
    const std::string& s = strings_[r.string];
    // An occurrence starts at some offset of the scanned bytes; whatever it is, one of the
    // run's first `stride` grams starts at a multiple of the stride.
    for (uint32_t j = 0; j < plan.stride; ++j) {
      const uint64_t g = wake_low_bytes(wake_lower_word(load_word(s.data() + r.offset + j, plan.gram)), plan.gram);
      set(wake_bit1(g, plan.bits_log2));
      set(wake_bit2(g, plan.bits_log2));
    }
  }
  plan.on = true;
  strings_.clear();
  runs_.clear();
  return plan;
}

namespace {

bool scan_hits(const WakePlan& plan, std::string_view text) {
  const size_t len = text.size();
  for (size_t off = 0; off < len; off += plan.stride) {
    const uint64_t w = load_word(text.data() + off, len - off);
    if ((w & 0x8080808080808080ULL) != 0) return true;
    if (len - off < plan.gram) continue;
    const uint64_t g = wake_low_bytes(wake_lower_word(w), plan.gram);
    const uint32_t b1 = wake_bit1(g, plan.bits_log2), b2 = wake_bit2(g, plan.bits_log2);
    if (((plan.bits[b1 >> 6] >> (b1 & 63)) & 1) != 0 && ((plan.bits[b2 >> 6] >> (b2 & 63)) & 1) != 0) return true;
  }
  return false;
}

}  // namespace

bool wake_filter_hits(const WakePlan& plan, std::string_view filename, std::string_view argv) {
  if (!plan.on) return true;
  // With a filename, argv[0] is not part of the command line (the probe skips it too, and
  // wakes for an argv area too long to look through).
  std::string_view args = argv;
  if (!filename.empty() && !argv.empty()) {
    if (argv.size() > WAKE_SCAN_CHECKS * WAKE_STRIDE_MAX) return true;
    const size_t nul = argv.find('\0');
    args = nul == std::string_view::npos ? std::string_view() : argv.substr(nul + 1);
  }
  const size_t checks = (filename.size() + plan.stride - 1) / plan.stride + (args.size() + plan.stride - 1) / plan.stride;
  if (checks > WAKE_SCAN_CHECKS) return true;
  return scan_hits(plan, filename) || scan_hits(plan, args);
}

Result<std::unique_ptr<WakeFilterMap>> WakeFilterMap::map(int fd) {
  std::unique_ptr<WakeFilterMap> self(new WakeFilterMap());
  self->fd_ = fd;
  const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  self->bytes_ = (sizeof(wake_filter) + page - 1) / page * page;
  void* m = mmap(nullptr, self->bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return fail(std::string("mapping the wake filter failed: ") + std::strerror(errno));
  self->filter_ = static_cast<wake_filter*>(m);
  if (__atomic_load_n(&self->filter_->magic, __ATOMIC_ACQUIRE) != WAKE_FILTER_MAGIC)
    return fail("the wake filter map handed over is not one (its magic number is wrong)");
  return self;
}

WakeFilterMap::~WakeFilterMap() {
  if (filter_ != nullptr) munmap(filter_, bytes_);
  if (fd_ >= 0) ::close(fd_);
}

void WakeFilterMap::write(const WakePlan& plan) {
  // Odd while writing: the probe wakes the holder for whatever it looks at meanwhile, and
  // for what it looked at across a change (it reads the count before and after).
  const uint32_t seq = wake_filter_write_begin(filter_);
  if (plan.on && plan.bits_log2 >= WAKE_FILTER_BITS_LOG2_MIN && plan.bits_log2 <= WAKE_FILTER_BITS_LOG2 &&
      plan.bits.size() == (size_t{1} << plan.bits_log2) / 64) {
    __atomic_store_n(&filter_->gram, plan.gram, __ATOMIC_RELAXED);
    __atomic_store_n(&filter_->stride, plan.stride, __ATOMIC_RELAXED);
    __atomic_store_n(&filter_->strings, plan.strings, __ATOMIC_RELAXED);
    __atomic_store_n(&filter_->bits_log2, plan.bits_log2, __ATOMIC_RELAXED);
    std::memcpy(filter_->bits, plan.bits.data(), plan.bits.size() * sizeof(uint64_t));
    __atomic_store_n(&filter_->on, 1u, __ATOMIC_RELAXED);
  } else {
    __atomic_store_n(&filter_->on, 0u, __ATOMIC_RELAXED);
  }
  wake_filter_write_end(filter_, seq);
}

void WakeFilterMap::turn_off() { write(WakePlan{}); }

bool WakeFilterMap::on() const { return __atomic_load_n(&filter_->on, __ATOMIC_ACQUIRE) != 0; }

}  // namespace cryptnono::enforcer
