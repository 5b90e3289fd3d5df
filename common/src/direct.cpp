#include "cryptnono/direct.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cryptnono/transport.h"

namespace cryptnono {

namespace {

// A datagram's header: version, topic length, topic (at most kMaxTopicBytes), zero padding.
void write_header(unsigned char (&header)[direct::kHeaderBytes], std::string_view topic) {
  std::memset(header, 0, sizeof header);
  header[0] = direct::kVersion;
  header[1] = static_cast<unsigned char>(topic.size());
  std::memcpy(header + 2, topic.data(), topic.size());
}

}  // namespace

std::string stream_key(std::string_view publisher_id, std::string_view topic) {
  std::string key;
  key.reserve(publisher_id.size() + topic.size() + 1);
  key.append(publisher_id).push_back('\n');
  key.append(topic);
  return key;
}

std::string direct_path_for(const std::string& endpoint) {
  std::string path = ipc_socket_path(endpoint);
  if (path.empty() || path.find('*') != std::string::npos) return {};  // "ipc://*": no fixed name
  static constexpr std::string_view kSock = ".sock";
  if (path.size() > kSock.size() && path.compare(path.size() - kSock.size(), kSock.size(), kSock) == 0)
    path.resize(path.size() - kSock.size());
  return path + ".direct";
}

Result<std::unique_ptr<DirectServer>> DirectServer::listen(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return fail("direct socket path '" + path + "' is empty or longer than " +
                std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  std::unique_ptr<DirectServer> server(new DirectServer());
  server->path_ = path;
  if (auto ok = prepare_socket_directory(path); !ok) return tl::unexpected(ok.error());
  server->listen_fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (server->listen_fd_ < 0) return fail(std::string("direct socket: ") + std::strerror(errno));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  // A socket file left by a previous run (the collector was killed) would make bind fail.
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  if (::bind(server->listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    return fail("cannot bind direct socket " + path + ": " + std::strerror(errno));
  // As for the ipc:// sockets: owner and group may connect, others not, whatever the umask.
  if (::chmod(path.c_str(), 0660) != 0) return fail("cannot set permissions of " + path + ": " + std::strerror(errno));
  if (::listen(server->listen_fd_, 16) != 0) return fail("cannot listen on " + path + ": " + std::strerror(errno));
  server->epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (server->epoll_fd_ < 0) return fail(std::string("epoll_create1: ") + std::strerror(errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = server->listen_fd_;
  if (::epoll_ctl(server->epoll_fd_, EPOLL_CTL_ADD, server->listen_fd_, &ev) != 0)
    return fail(std::string("epoll_ctl: ") + std::strerror(errno));
  return server;
}

DirectServer::~DirectServer() {
  for (auto& [fd, client] : clients_) ::close(fd);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(path_.c_str());
  }
}

void DirectServer::close_client(int fd) {
  if (fd == ring_holder_) {
    ring_holder_ = -1;
    if (ring_.on_hold) ring_.on_hold(false);
  }
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
  clients_.erase(fd);
}

void DirectServer::read_client(int fd) {
  char buf[256];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {  // the client left (0) or its socket failed
      close_client(fd);
      return;
    }
    std::string_view msg(buf, static_cast<size_t>(n));
    auto it = clients_.find(fd);
    if (it != clients_.end() && msg.rfind(direct::kRingRequest, 0) == 0) {
      answer_ring_request(fd, msg.substr(direct::kRingRequest.size()));
      if (clients_.count(fd) == 0) return;  // the answer could not be sent: closed
      continue;
    }
    // Anything but a subscription is a client that does not speak this protocol.
    if (it == clients_.end() || msg.rfind(direct::kSubscribe, 0) != 0 || it->second.topics.size() >= 16) {
      close_client(fd);
      return;
    }
    it->second.topics.emplace_back(msg.substr(direct::kSubscribe.size()));
  }
}

void DirectServer::answer_ring_request(int fd, std::string_view topic) {
  std::string refusal;
  if (ring_.fd < 0 || topic != ring_.topic) {
    refusal = "no kernel ring for topic '" + std::string(topic) + "' here";
  } else if (ring_holder_ >= 0) {
    refusal = "the kernel ring is held by another client";
  }
  const bool grant = refusal.empty();
  unsigned char header[direct::kHeaderBytes];
  write_header(header, direct::kRingTopic);
  uint64_t bytes = grant ? ring_.bytes : 0;
  const std::string& text = grant ? ring_.publisher_id : refusal;
  iovec iov[3] = {{header, sizeof header}, {&bytes, sizeof bytes}, {const_cast<char*>(text.data()), text.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 3;
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(2 * sizeof(int))] = {};
  if (grant) {
    const int fds[2] = {ring_.fd, ring_.wake_filter_fd};
    const size_t nfds = ring_.wake_filter_fd >= 0 ? 2 : 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {  // a client that asked and cannot take the answer is gone or stuck
    close_client(fd);
    return;
  }
  if (grant) {
    ring_holder_ = fd;
    ++ring_grants_;
    if (ring_.on_hold) ring_.on_hold(true);
  }
}

void DirectServer::service() {
  epoll_event events[16];
  int n = ::epoll_wait(epoll_fd_, events, 16, 0);
  for (int i = 0; i < n; ++i) {
    int fd = events[i].data.fd;
    if (fd == listen_fd_) {
      for (;;) {
        int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) break;  // EAGAIN: no more pending (other errors: the client is gone)
        // A larger buffer absorbs bursts (an exec storm while the enforcer is busy); the
        // kernel caps it at net.core.wmem_max. Failing to raise it is not an error.
        int size = direct::kSendBufferBytes;
        (void)::setsockopt(c, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = c;
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c, &ev) != 0) {
          ::close(c);
          continue;
        }
        clients_.emplace(c, Client{});
      }
    } else if (events[i].events & (EPOLLHUP | EPOLLERR)) {
      close_client(fd);
    } else {
      read_client(fd);
    }
  }
}

void DirectServer::send(std::string_view topic, const void* payload, size_t size, bool in_kernel_ring) {
  if (clients_.empty() || topic.size() > direct::kMaxTopicBytes) return;
  unsigned char header[direct::kHeaderBytes];
  write_header(header, topic);
  iovec iov[2] = {{header, sizeof header}, {const_cast<void*>(payload), size}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  for (auto it = clients_.begin(); it != clients_.end();) {
    int fd = it->first;
    bool wanted = false;
    for (const auto& t : it->second.topics) wanted |= topic.rfind(t, 0) == 0;
    ++it;  // before a possible close_client(fd), which erases the entry
    if (!wanted || (in_kernel_ring && fd == ring_holder_)) continue;
    ssize_t n;
    do {
      n = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof header + size)) {
      ++sent_;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EMSGSIZE)) {
      ++dropped_;  // the ZeroMQ copy still reaches the client
    } else {
      close_client(fd);  // EPIPE, ECONNRESET: the client left
    }
  }
}

bool DuplicateFilter::first_copy(std::string_view publisher_id, std::string_view topic, uint64_t sequence) {
  std::string key = stream_key(publisher_id, topic);
  auto it = streams_.find(key);
  if (it == streams_.end()) {
    if (streams_.size() >= kMaxStreams) {
      auto oldest = streams_.begin();
      for (auto s = streams_.begin(); s != streams_.end(); ++s)
        if (s->second.last_used < oldest->second.last_used) oldest = s;
      streams_.erase(oldest);
    }
    it = streams_.emplace(std::move(key), Stream{}).first;
  }
  Stream& s = it->second;
  s.last_used = ++uses_;
  auto bit = [&](uint64_t seq) -> std::pair<uint64_t&, uint64_t> {
    uint64_t slot = seq % kWindow;
    return {s.bits[slot / 64], uint64_t{1} << (slot % 64)};
  };
  if (sequence > s.highest) {
    // Slide the window: slots of sequences now more than kWindow behind are reused.
    if (sequence - s.highest >= kWindow) {
      std::fill(s.bits.begin(), s.bits.end(), 0);
    } else {
      for (uint64_t q = s.highest + 1; q < sequence; ++q) {
        auto [word, mask] = bit(q);
        word &= ~mask;
      }
    }
    s.highest = sequence;
    auto [word, mask] = bit(sequence);
    word |= mask;
    return true;
  }
  if (s.highest - sequence >= kWindow) return true;  // too old to tell
  auto [word, mask] = bit(sequence);
  if (word & mask) return false;
  word |= mask;
  return true;
}

TwoPathJudge::Verdict TwoPathJudge::judge(std::string_view publisher_id, std::string_view topic, uint64_t sequence,
                                           bool direct) {
  Verdict v;
  if (direct == direct_primary_) {
    auto seen = tracker_.observe(publisher_id, topic, sequence, direct && direct_gaps_expected_);
    v.lost = seen.lost;
    v.new_publisher = seen.new_publisher;
  }
  if (direct && !direct_primary_) {
    bool continues = run_first_ != 0 && sequence == run_last_ + 1 && publisher_id == run_publisher_ && topic == run_topic_;
    if (!continues) {  // the first direct copy, or the run broke (a full socket buffer dropped one)
      run_publisher_.assign(publisher_id);
      run_topic_.assign(topic);
      run_first_ = sequence;
    }
    run_last_ = sequence;
  }
  v.handle = duplicates_.first_copy(publisher_id, topic, sequence);
  if (direct_alone_ && !direct_primary_ && run_first_ != 0) {
    // ZeroMQ has delivered everything up to the run's start: from here the run covers it all.
    uint64_t zmq_last = tracker_.last(run_publisher_, run_topic_);
    if (zmq_last != 0 && zmq_last + 1 >= run_first_) {
      tracker_.advance(run_publisher_, run_topic_, run_last_);
      direct_primary_ = true;
      v.direct_now_primary = true;
    }
  }
  return v;
}

bool TwoPathJudge::direct_lost() {
  bool was = direct_primary_;
  direct_primary_ = false;
  direct_gaps_expected_ = false;
  run_first_ = run_last_ = 0;
  return was;
}

}  // namespace cryptnono
