// A reader of a BPF ring buffer (BPF_MAP_TYPE_RINGBUF) that needs no bpf() system call:
// only the map's fd (handed over by its owner, see direct.h), mmap and epoll. The
// enforcer reads the exec probe's kernel ring with it after dropping every capability,
// and container runtimes' default seccomp profiles refuse bpf() to such a process.
//
// The layout is the kernel's (kernel/bpf/ringbuf.c): page 0 holds the consumer position
// (the only page a reader may write), page 1 the producer position, then the data area
// mapped twice in a row so a record that wraps reads as one piece. Each record starts
// with an 8-byte header: its length (bit 31: still being written, bit 30: discarded) and
// a page offset; records are 8-byte aligned.
//
// One reader per ring: two would race on the consumer position. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "cryptnono/result.h"

namespace cryptnono {

// The two mappings of a BPF ring buffer's fd (the layout above), shared by its one reader
// (KernelRing) and a follower (KernelRingFollower). Unmapped when destroyed; the fd is
// never closed here. Move-only.
class RingMapping {
 public:
  static constexpr uint32_t kBusyBit = 1u << 31;
  static constexpr uint32_t kDiscardBit = 1u << 30;
  static constexpr uint64_t kHeaderBytes = 8;

  // `data_bytes` is the map's max_entries: a power of two, a multiple of the page size.
  // `consumer_writable`: the consumer page read-write (the ring's one reader) or read-only.
  // `what` starts the error messages.
  static Result<RingMapping> map(int fd, uint64_t data_bytes, bool consumer_writable, const char* what);
  RingMapping() = default;
  RingMapping(RingMapping&& other) noexcept { *this = std::move(other); }
  RingMapping& operator=(RingMapping&& other) noexcept;
  RingMapping(const RingMapping&) = delete;
  RingMapping& operator=(const RingMapping&) = delete;
  ~RingMapping() { unmap(); }

  uint64_t data_bytes() const { return data_bytes_; }
  uint64_t consumer_pos() const { return load_acquire(consumer_pos_); }
  uint64_t producer_pos() const { return load_acquire(producer_pos_); }
  // Only with consumer_writable.
  void free_to(uint64_t pos) { __atomic_store_n(consumer_pos_, pos, __ATOMIC_RELEASE); }
  // The header of the record at `pos`: its length word (busy and discard bits included),
  // then the record's bytes, which never wrap (the data area is mapped twice).
  const uint32_t* header_at(uint64_t pos) const {
    return reinterpret_cast<const uint32_t*>(data_ + (pos & (data_bytes_ - 1)));
  }
  static uint32_t length_word(const uint32_t* header) { return __atomic_load_n(header, __ATOMIC_ACQUIRE); }
  static const void* record_data(const uint32_t* header) {
    return reinterpret_cast<const unsigned char*>(header) + kHeaderBytes;
  }
  // Bytes a record of `size` takes in the ring, its header included.
  static uint64_t span(uint32_t size) { return (static_cast<uint64_t>(size) + kHeaderBytes + 7) & ~uint64_t{7}; }

 private:
  static uint64_t load_acquire(const uint64_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
  void unmap();

  uint64_t data_bytes_ = 0;
  size_t page_ = 0;
  void* consumer_map_ = nullptr;  // one page
  void* producer_map_ = nullptr;  // one page + the data area twice, read-only
  uint64_t* consumer_pos_ = nullptr;
  const uint64_t* producer_pos_ = nullptr;
  const unsigned char* data_ = nullptr;
};

class KernelRing {
 public:
  // Maps the ring behind `fd` (taken over: closed with this object). `data_bytes` is the
  // map's max_entries: a power of two, a multiple of the page size.
  static Result<std::unique_ptr<KernelRing>> map(int fd, uint64_t data_bytes);
  ~KernelRing();
  KernelRing(const KernelRing&) = delete;
  KernelRing& operator=(const KernelRing&) = delete;

  // Readable (epoll) when records are waiting.
  int fd() const { return fd_; }
  uint64_t data_bytes() const { return ring_.data_bytes(); }

  // Hands each complete record waiting now to `fn(const void* data, size_t size)` (or
  // `fn(data, size, uint64_t position)`), in order, and frees its space right after; stops
  // at the first record still being written. Returns how many records were handed over
  // (discarded ones are skipped).
  template <class Fn>
  size_t consume(Fn&& fn) {
    size_t n = 0;
    uint64_t cons = ring_.consumer_pos();
    for (;;) {
      const uint64_t prod = ring_.producer_pos();
      if (cons >= prod) break;
      while (cons < prod) {
        const uint32_t* header = ring_.header_at(cons);
        const uint32_t len = RingMapping::length_word(header);
        if ((len & RingMapping::kBusyBit) != 0) return n;  // the producer has not committed it yet
        const uint32_t size = len & ~(RingMapping::kBusyBit | RingMapping::kDiscardBit);
        const uint64_t at = cons;
        cons += RingMapping::span(size);
        if ((len & RingMapping::kDiscardBit) == 0) {
          if constexpr (std::is_invocable_v<Fn, const void*, size_t, uint64_t>) {
            fn(RingMapping::record_data(header), static_cast<size_t>(size), at);
          } else {
            (void)at;
            fn(RingMapping::record_data(header), static_cast<size_t>(size));
          }
          ++n;
        }
        // Freed at once, as libbpf does: the producer wakes a reader only when the reader
        // has caught up, so the position must follow every record.
        ring_.free_to(cons);
      }
    }
    return n;
  }

  // Hands each complete record waiting now to `fn(const void* data, size_t size, uint64_t
  // position)`, in order, without freeing anything (consume() hands them over again);
  // stops at the first record still being written. Returns the position it stopped at.
  template <class Fn>
  uint64_t peek(Fn&& fn) const {
    uint64_t pos = ring_.consumer_pos();
    const uint64_t prod = ring_.producer_pos();
    while (pos < prod) {
      const uint32_t* header = ring_.header_at(pos);
      const uint32_t len = RingMapping::length_word(header);
      if ((len & RingMapping::kBusyBit) != 0) break;
      const uint32_t size = len & ~(RingMapping::kBusyBit | RingMapping::kDiscardBit);
      if ((len & RingMapping::kDiscardBit) == 0) fn(RingMapping::record_data(header), static_cast<size_t>(size), pos);
      pos += RingMapping::span(size);
    }
    return pos;
  }

  // Records waiting (the producer ahead of the consumer), and how many bytes they take.
  bool pending() const { return ring_.producer_pos() > ring_.consumer_pos(); }
  uint64_t pending_bytes() const { return ring_.producer_pos() - ring_.consumer_pos(); }

 private:
  KernelRing() = default;

  int fd_ = -1;
  RingMapping ring_;
};

// Reads the records of a BPF ring buffer that another process consumes (a KernelRing),
// without freeing anything: the collector's view of the kernel ring while an enforcer
// holds it, so that the probe writes each exec once instead of to two rings. Maps the
// consumer page and the data area read-only.
//
// The records it has not read yet are not protected from the producer: once the reader
// frees them, the producer may write over them. A follower that fell a whole ring behind
// (the collector stopped for a while at the machine's highest exec rate: the kernel ring
// holds seconds of execs) skips to the reader's position, which is always a record
// boundary with nothing overwritten after it, and counts what it skipped. Each record is
// copied, then checked: if the producer has since reserved space that reaches it, the
// copy is thrown away as skipped too.
//
// One follower per ring. Not thread-safe.
class KernelRingFollower {
 public:
  // `fd` is not taken over (the map's owner keeps it). Starts at the producer's position
  // now: records written before are not followed.
  static Result<std::unique_ptr<KernelRingFollower>> map(int fd, uint64_t data_bytes);
  KernelRingFollower(const KernelRingFollower&) = delete;
  KernelRingFollower& operator=(const KernelRingFollower&) = delete;

  // Hands each complete record written since the last call to `fn(const void* data,
  // size_t size)` (a copy: valid during the call), in order; stops at the first record
  // still being written. Returns how many records were handed over.
  template <class Fn>
  size_t follow(Fn&& fn) {
    size_t n = 0;
    const uint64_t ring_bytes = ring_.data_bytes();
    for (;;) {
      const uint64_t prod = ring_.producer_pos();
      if (pos_ >= prod) break;
      if (prod - pos_ > ring_bytes) {  // lapped: what lies between is gone
        skip_to_reader();
        continue;
      }
      const uint32_t* header = ring_.header_at(pos_);
      const uint32_t len = RingMapping::length_word(header);
      if ((len & RingMapping::kBusyBit) != 0) break;  // the producer has not committed it yet
      const uint32_t size = len & ~(RingMapping::kBusyBit | RingMapping::kDiscardBit);
      const uint64_t total = RingMapping::span(size);
      if (total > ring_bytes || pos_ + total > prod) {  // cannot be a record: overwritten under us
        skip_to_reader();
        continue;
      }
      const bool discarded = (len & RingMapping::kDiscardBit) != 0;
      if (!discarded) {
        const auto* data = static_cast<const unsigned char*>(RingMapping::record_data(header));
        copy_.assign(data, data + size);
      }
      // The copy is intact if no reservation has reached this record's bytes again: every
      // reservation moves the producer's position before anything is written.
      __atomic_thread_fence(__ATOMIC_ACQUIRE);
      if (ring_.producer_pos() > pos_ + ring_bytes) {
        skip_to_reader();
        continue;
      }
      pos_ += total;
      if (!discarded) {
        fn(static_cast<const void*>(copy_.data()), copy_.size());
        ++n;
      }
    }
    return n;
  }

  // Times the follower fell behind and skipped records it never read, and the bytes
  // (records and headers) skipped.
  uint64_t laps() const { return laps_; }
  uint64_t skipped_bytes() const { return skipped_bytes_; }

 private:
  KernelRingFollower() = default;
  void skip_to_reader();

  RingMapping ring_;  // the consumer page read-only
  uint64_t pos_ = 0;
  uint64_t laps_ = 0;
  uint64_t skipped_bytes_ = 0;
  std::vector<unsigned char> copy_;
};

}  // namespace cryptnono
