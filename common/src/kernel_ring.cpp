#include "cryptnono/kernel_ring.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace cryptnono {

Result<RingMapping> RingMapping::map(int fd, uint64_t data_bytes, bool consumer_writable, const char* what) {
  RingMapping m;
  m.page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (fd < 0) return fail(std::string(what) + ": no fd");
  if (data_bytes < m.page_ || (data_bytes & (data_bytes - 1)) != 0 || data_bytes > (uint64_t{1} << 32))
    return fail(std::string(what) + ": size " + std::to_string(data_bytes) +
                " is not a power of two of at least a page");
  m.data_bytes_ = data_bytes;
  void* c = ::mmap(nullptr, m.page_, consumer_writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
  if (c == MAP_FAILED) return fail(std::string(what) + ": mapping the consumer page failed: " + std::strerror(errno));
  m.consumer_map_ = c;
  void* p = ::mmap(nullptr, m.page_ + 2 * data_bytes, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(m.page_));
  if (p == MAP_FAILED) return fail(std::string(what) + ": mapping the data area failed: " + std::strerror(errno));
  m.producer_map_ = p;
  m.consumer_pos_ = static_cast<uint64_t*>(c);
  m.producer_pos_ = static_cast<const uint64_t*>(p);
  m.data_ = static_cast<const unsigned char*>(p) + m.page_;
  return m;
}

RingMapping& RingMapping::operator=(RingMapping&& other) noexcept {
  if (this != &other) {
    unmap();
    data_bytes_ = std::exchange(other.data_bytes_, 0);
    page_ = std::exchange(other.page_, 0);
    consumer_map_ = std::exchange(other.consumer_map_, nullptr);
    producer_map_ = std::exchange(other.producer_map_, nullptr);
    consumer_pos_ = std::exchange(other.consumer_pos_, nullptr);
    producer_pos_ = std::exchange(other.producer_pos_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
  }
  return *this;
}

void RingMapping::unmap() {
  if (producer_map_ != nullptr) ::munmap(producer_map_, page_ + 2 * data_bytes_);
  if (consumer_map_ != nullptr) ::munmap(consumer_map_, page_);
  producer_map_ = consumer_map_ = nullptr;
}

Result<std::unique_ptr<KernelRing>> KernelRing::map(int fd, uint64_t data_bytes) {
  std::unique_ptr<KernelRing> ring(new KernelRing());
  ring->fd_ = fd;  // owned from here, whatever happens
  auto mapped = RingMapping::map(fd, data_bytes, true, "kernel ring");
  if (!mapped) return tl::unexpected(mapped.error());
  ring->ring_ = std::move(*mapped);
  return ring;
}

KernelRing::~KernelRing() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<KernelRingFollower>> KernelRingFollower::map(int fd, uint64_t data_bytes) {
  std::unique_ptr<KernelRingFollower> f(new KernelRingFollower());
  auto mapped = RingMapping::map(fd, data_bytes, false, "kernel ring follower");
  if (!mapped) return tl::unexpected(mapped.error());
  f->ring_ = std::move(*mapped);
  f->pos_ = f->ring_.producer_pos();
  return f;
}

void KernelRingFollower::skip_to_reader() {
  // The reader's position is a record boundary, and nothing after it has been freed, so
  // nothing after it is overwritten; it is at least the producer's minus the ring's size.
  const uint64_t reader = ring_.consumer_pos();
  const uint64_t to = reader > pos_ ? reader : ring_.producer_pos();
  ++laps_;
  skipped_bytes_ += to > pos_ ? to - pos_ : 0;
  pos_ = to > pos_ ? to : pos_;
}

}  // namespace cryptnono
