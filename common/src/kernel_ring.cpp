#include "cryptnono/kernel_ring.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace cryptnono {

Result<std::unique_ptr<KernelRing>> KernelRing::map(int fd, uint64_t data_bytes) {
  std::unique_ptr<KernelRing> ring(new KernelRing());
  ring->fd_ = fd;  // owned from here, whatever happens
  ring->page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (fd < 0) return fail("kernel ring: no fd");
  if (data_bytes < ring->page_ || (data_bytes & (data_bytes - 1)) != 0 || data_bytes > (uint64_t{1} << 32))
    return fail("kernel ring: size " + std::to_string(data_bytes) + " is not a power of two of at least a page");
  ring->data_bytes_ = data_bytes;
  void* c = ::mmap(nullptr, ring->page_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (c == MAP_FAILED) return fail(std::string("kernel ring: mapping the consumer page failed: ") + std::strerror(errno));
  ring->consumer_map_ = c;
  void* p = ::mmap(nullptr, ring->page_ + 2 * data_bytes, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(ring->page_));
  if (p == MAP_FAILED) return fail(std::string("kernel ring: mapping the data area failed: ") + std::strerror(errno));
  ring->producer_map_ = p;
  ring->consumer_pos_ = static_cast<uint64_t*>(c);
  ring->producer_pos_ = static_cast<const uint64_t*>(p);
  ring->data_ = static_cast<const unsigned char*>(p) + ring->page_;
  return ring;
}

KernelRing::~KernelRing() {
  if (producer_map_ != nullptr) ::munmap(producer_map_, page_ + 2 * data_bytes_);
  if (consumer_map_ != nullptr) ::munmap(consumer_map_, page_);
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<KernelRingFollower>> KernelRingFollower::map(int fd, uint64_t data_bytes) {
  std::unique_ptr<KernelRingFollower> f(new KernelRingFollower());
  f->page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (fd < 0) return fail("kernel ring follower: no fd");
  if (data_bytes < f->page_ || (data_bytes & (data_bytes - 1)) != 0 || data_bytes > (uint64_t{1} << 32))
    return fail("kernel ring follower: size " + std::to_string(data_bytes) +
                " is not a power of two of at least a page");
  f->data_bytes_ = data_bytes;
  void* c = ::mmap(nullptr, f->page_, PROT_READ, MAP_SHARED, fd, 0);
  if (c == MAP_FAILED)
    return fail(std::string("kernel ring follower: mapping the consumer page failed: ") + std::strerror(errno));
  f->consumer_map_ = c;
  void* p = ::mmap(nullptr, f->page_ + 2 * data_bytes, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(f->page_));
  if (p == MAP_FAILED)
    return fail(std::string("kernel ring follower: mapping the data area failed: ") + std::strerror(errno));
  f->producer_map_ = p;
  f->consumer_pos_ = static_cast<const uint64_t*>(c);
  f->producer_pos_ = static_cast<const uint64_t*>(p);
  f->data_ = static_cast<const unsigned char*>(p) + f->page_;
  f->pos_ = load_acquire(f->producer_pos_);
  return f;
}

void KernelRingFollower::skip_to_reader() {
  // The reader's position is a record boundary, and nothing after it has been freed, so
  // nothing after it is overwritten; it is at least the producer's minus the ring's size.
  const uint64_t reader = load_acquire(consumer_pos_);
  const uint64_t to = reader > pos_ ? reader : load_acquire(producer_pos_);
  ++laps_;
  skipped_bytes_ += to > pos_ ? to - pos_ : 0;
  pos_ = to > pos_ ? to : pos_;
}

KernelRingFollower::~KernelRingFollower() {
  if (producer_map_ != nullptr) ::munmap(producer_map_, page_ + 2 * data_bytes_);
  if (consumer_map_ != nullptr) ::munmap(consumer_map_, page_);
}

}  // namespace cryptnono
