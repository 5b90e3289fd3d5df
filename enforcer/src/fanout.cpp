#include "cryptnono/enforcer/fanout.h"

namespace cryptnono::enforcer {

namespace {
inline uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}
}  // namespace

size_t ProcessKeyHash::operator()(const ProcessKey& k) const {
  return static_cast<size_t>(mix(mix(0, k.tgid), k.start_boot_ns));
}

size_t DestinationHash::operator()(const Destination& d) const {
  uint64_t h = mix(d.address.v6 ? 1 : 0, d.port);
  for (size_t i = 0; i < d.address.size(); i += 4) {
    uint32_t w = static_cast<uint32_t>(d.address.bytes[i]) << 24 | static_cast<uint32_t>(d.address.bytes[i + 1]) << 16 |
                 static_cast<uint32_t>(d.address.bytes[i + 2]) << 8 | d.address.bytes[i + 3];
    h = mix(h, w);
  }
  return static_cast<size_t>(h);
}

void FanoutTracker::drop_old(Process& p, uint64_t now_ns) {
  while (!p.order.empty() && expired(p.order.front().last_ns, now_ns)) {
    p.index.erase(p.order.front().dest);
    p.order.pop_front();
  }
}

void FanoutTracker::expire(uint64_t now_ns) {
  // lru_ is ordered by each process's last connect: once the front's last connect is
  // inside the window, every later one is too.
  while (!lru_.empty()) {
    auto it = processes_.find(lru_.front());
    if (it == processes_.end()) {  // cannot happen; keep the list consistent anyway
      lru_.pop_front();
      continue;
    }
    if (!expired(it->second.last_ns, now_ns)) break;
    processes_.erase(it);
    lru_.pop_front();
  }
}

size_t FanoutTracker::record(const ProcessKey& process, const Destination& dest, uint64_t now_ns) {
  expire(now_ns);
  auto it = processes_.find(process);
  if (it == processes_.end()) {
    if (processes_.size() >= limits_.max_processes && !lru_.empty()) {
      processes_.erase(lru_.front());
      lru_.pop_front();
      ++process_evictions_;
    }
    it = processes_.emplace(process, Process{}).first;
    lru_.push_back(process);
    it->second.lru = std::prev(lru_.end());
  } else {
    lru_.splice(lru_.end(), lru_, it->second.lru);
  }
  Process& p = it->second;
  p.last_ns = now_ns;
  drop_old(p, now_ns);
  if (auto d = p.index.find(dest); d != p.index.end()) {
    d->second->last_ns = now_ns;
    p.order.splice(p.order.end(), p.order, d->second);
  } else {
    if (p.order.size() >= limits_.max_destinations && !p.order.empty()) {
      p.index.erase(p.order.front().dest);
      p.order.pop_front();
      ++destination_evictions_;
    }
    p.order.push_back(Seen{dest, now_ns});
    p.index.emplace(dest, std::prev(p.order.end()));
  }
  return p.order.size();
}

void FanoutTracker::forget(const ProcessKey& process) {
  auto it = processes_.find(process);
  if (it == processes_.end()) return;
  lru_.erase(it->second.lru);
  processes_.erase(it);
}

}  // namespace cryptnono::enforcer
