#include "cryptnono/transport.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include <kj/io.h>

#include "cryptnono/clock.h"

namespace cryptnono {

namespace {

std::string random_hex(size_t bytes) {
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    auto b = static_cast<unsigned>(rd()) & 0xffu;
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

}  // namespace

std::string ipc_socket_path(const std::string& endpoint) {
  static constexpr std::string_view kIpc = "ipc://";
  if (endpoint.rfind(kIpc, 0) != 0) return {};
  std::string path = endpoint.substr(kIpc.size());
  if (path.empty() || path[0] == '@') return {};
  return path;
}

capnp::ReaderOptions wire_reader_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 8 * 1024 * 1024;  // 64 MiB
  options.nestingLimit = 16;
  return options;
}

Result<void> prepare_endpoint(const std::string& endpoint) {
  std::string path = ipc_socket_path(endpoint);
  if (path.empty()) return {};  // not ipc, or the abstract namespace: no directory
  return prepare_socket_directory(path);
}

Result<void> prepare_socket_directory(const std::string& socket_path) {
  auto dir = std::filesystem::path(socket_path).parent_path();
  if (dir.empty()) return {};
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec) return fail("cannot create socket directory " + dir.string() + ": " + ec.message());
    chmod(dir.c_str(), 0700);
  }
  return {};
}

namespace {

bool is_tcp(const std::string& endpoint) { return endpoint.rfind("tcp://", 0) == 0; }

}  // namespace

Result<std::string> Publisher::bind_endpoint(zmq::context_t& ctx, zmq::socket_t& socket, const std::string& endpoint,
                                      const TransportSecurity* security, std::unique_ptr<ZapHandler>& zap) {
  if (auto ok = prepare_endpoint(endpoint); !ok) return tl::unexpected(ok.error());
  bool curve = is_tcp(endpoint);
  if (curve) {
    if (!security || !security->keys || security->keys->secret_key.empty())
      return fail("cannot bind " + endpoint +
                  ": a tcp:// endpoint needs CurveZMQ (--curve-keys with this program's key pair, and "
                  "--curve-authorized with the clients allowed in); ipc:// needs neither");
    if (security->authorized.empty())
      return fail("cannot bind " + endpoint + ": no authorized client keys (--curve-authorized): nobody could connect");
  }
  try {
    if (curve) {
      // The authenticator must answer before the first handshake: started before bind.
      if (!zap) {
        auto started = ZapHandler::start(ctx, security->authorized);
        if (!started) return tl::unexpected(started.error());
        zap = std::move(*started);
      }
      socket.set(zmq::sockopt::curve_server, 1);
      socket.set(zmq::sockopt::curve_secretkey, security->keys->secret_key);
      socket.set(zmq::sockopt::zap_domain, "cryptnono");
    }
    socket.bind(endpoint);
    // Socket options are copied into a listener when it binds: switching CurveZMQ off
    // again leaves this endpoint encrypted and a later ipc:// bind plain.
    if (curve) socket.set(zmq::sockopt::curve_server, 0);
  } catch (const zmq::error_t& e) {
    return fail("cannot bind " + endpoint + ": " + e.what());
  }
  // ZeroMQ creates the socket file with the umask's mode (0755 under the usual 022),
  // and connecting to a unix socket needs write permission on it. Owner and group may
  // connect: in the Helm chart the shared socket directory belongs to the pod's
  // fsGroup (setgid), so the non-root exporter reaches the root-uid stages' sockets.
  // Others get nothing, whatever the umask.
  auto bound = socket.get(zmq::sockopt::last_endpoint);  // resolves "ipc://*"
  if (auto path = ipc_socket_path(bound); !path.empty() && chmod(path.c_str(), 0660) != 0)
    return fail("cannot set permissions of " + path + ": " + std::strerror(errno));
  return bound;
}

Result<std::unique_ptr<Publisher>> Publisher::bind(zmq::context_t& ctx, const std::string& endpoint, std::string node,
                                                   std::string kind, std::string name, int send_hwm,
                                                   const TransportSecurity* security) {
  try {
    // XPUB behaves as PUB for sending; it also lets us see subscriptions when asked to.
    zmq::socket_t socket(ctx, zmq::socket_type::xpub);
    socket.set(zmq::sockopt::sndhwm, send_hwm);
    socket.set(zmq::sockopt::linger, 0);
    std::unique_ptr<ZapHandler> zap;
    if (auto ok = bind_endpoint(ctx, socket, endpoint, security, zap); !ok) return tl::unexpected(ok.error());
    std::string id = kind + "/" + name + "/" + random_hex(8);
    auto publisher = std::unique_ptr<Publisher>(
        new Publisher(std::move(socket), endpoint, std::move(node), std::move(kind), std::move(id)));
    publisher->ctx_ = &ctx;
    publisher->zap_ = std::move(zap);
    return publisher;
  } catch (const zmq::error_t& e) {
    return fail("cannot bind " + endpoint + ": " + e.what());
  }
}

Result<std::string> Publisher::add_endpoint(const std::string& endpoint, const TransportSecurity* security) {
  return bind_endpoint(*ctx_, socket_, endpoint, security, zap_);
}

Result<void> Publisher::add_direct(const std::string& path) {
  auto server = DirectServer::listen(path);
  if (!server) return tl::unexpected(server.error());
  direct_ = std::move(*server);
  return {};
}

Publisher::Publisher(zmq::socket_t socket, std::string endpoint, std::string node, std::string kind, std::string id)
    : socket_(std::move(socket)),
      endpoint_(std::move(endpoint)),
      node_(std::move(node)),
      kind_(std::move(kind)),
      id_(std::move(id)) {}

Result<void> Publisher::track_subscriptions() {
  try {
    socket_.set(zmq::sockopt::xpub_verbose, 1);
    xpub_ = true;
    return {};
  } catch (const zmq::error_t& e) {
    return fail(std::string("cannot track subscriptions: ") + e.what());
  }
}

std::vector<std::string> Publisher::take_subscriptions() {
  std::vector<std::string> topics;
  zmq::message_t msg;
  // Without tracking, subscription messages still queue on an XPUB socket; draining them
  // keeps that queue empty either way.
  while (socket_.recv(msg, zmq::recv_flags::dontwait)) {
    auto* data = static_cast<const char*>(msg.data());
    if (xpub_ && msg.size() >= 1 && data[0] == 1) topics.emplace_back(data + 1, msg.size() - 1);
  }
  return topics;
}

int Publisher::fd() { return socket_.get(zmq::sockopt::fd); }

schema::Envelope::Builder Publisher::begin(capnp::MessageBuilder& message, std::string_view topic) {
  auto envelope = message.initRoot<schema::Envelope>();
  envelope.setNode(node_);
  envelope.setPublisherId(id_);
  envelope.setPublisherKind(kind_);
  auto it = sequence_.find(topic);
  if (it == sequence_.end()) it = sequence_.emplace(std::string(topic), 0).first;
  envelope.setSequence(++it->second);
  envelope.setSentWallNs(wall_ns());
  envelope.setSentBootNs(boot_ns());
  return envelope;
}

zmq::message_t Publisher::serialize(capnp::MessageBuilder& message) {
  // One allocation (the ZeroMQ frame) per message: the serialized size is known up front,
  // so the message is written straight into the frame.
  size_t words = capnp::computeSerializedSizeInWords(message);
  zmq::message_t payload(words * sizeof(capnp::word));
  kj::ArrayOutputStream out(kj::arrayPtr(static_cast<kj::byte*>(payload.data()), payload.size()));
  capnp::writeMessage(out, message);
  return payload;
}

bool Publisher::send(std::string_view topic, capnp::MessageBuilder& message, bool in_kernel_ring) {
  if (!held_.empty()) flush();
  zmq::message_t payload = serialize(message);
  return send_frames(topic, payload, in_kernel_ring);
}

Result<void> Publisher::offer_kernel_ring(std::string topic, int fd, uint64_t bytes, std::function<void(bool)> on_hold,
                                          int wake_filter_fd) {
  if (!direct_) return fail("a kernel ring needs the direct socket");
  direct_->offer_kernel_ring(KernelRingOffer{std::move(topic), fd, bytes, id_, std::move(on_hold), wake_filter_fd});
  return {};
}

void Publisher::send_later(std::string_view topic, capnp::MessageBuilder& message) {
  held_.emplace_back(std::string(topic), serialize(message));
  if (held_.size() >= kMaxHeld) flush();
}

size_t Publisher::flush() {
  size_t failed = 0;
  for (auto& [topic, payload] : held_) failed += send_frames(topic, payload) ? 0 : 1;
  held_.clear();
  return failed;
}

bool Publisher::send_frames(std::string_view topic, zmq::message_t& payload, bool in_kernel_ring) {
  // The direct path first: it is the one a waiting enforcer reads.
  if (direct_) direct_->send(topic, payload.data(), payload.size(), in_kernel_ring);
  try {
    auto first = socket_.send(zmq::buffer(topic.data(), topic.size()), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    if (!first) {
      ++dropped_;
      return false;
    }
    // Once the first frame is accepted, ZeroMQ guarantees the rest of the message is.
    socket_.send(payload, zmq::send_flags::dontwait);
    ++sent_;
    return true;
  } catch (const zmq::error_t&) {
    ++dropped_;
    return false;
  }
}

void Received::reserve_words(size_t words) {
  reader_.reset();  // it may point into the buffer about to be replaced
  if (words > capacity_words_) {
    words_.reset(new capnp::word[words]);
    capacity_words_ = words;
  }
}

bool Received::adopt(size_t words) {
  reader_.reset();
  size_words_ = words;
  try {
    reader_.emplace(kj::arrayPtr(words_.get(), size_words_), wire_reader_options());
  } catch (const kj::Exception&) {
    reader_.reset();
    size_words_ = 0;
    return false;
  }
  return true;
}

bool Received::assign(std::string_view topic, const void* payload, size_t size) {
  reader_.reset();
  size_words_ = 0;
  if (topic.data() != topic_.data()) topic_.assign(topic);
  if (size == 0 || size % sizeof(capnp::word) != 0) return false;
  // Copied into word-aligned storage: ZeroMQ frames carry no alignment guarantee.
  size_t words = size / sizeof(capnp::word);
  reserve_words(words);
  std::memcpy(static_cast<void*>(words_.get()), payload, size);
  direct_ = false;
  return adopt(words);
}

Result<schema::Envelope::Reader> Received::envelope() {
  if (!reader_) return fail("no message");
  try {
    return reader_->getRoot<schema::Envelope>();
  } catch (const kj::Exception& e) {
    return fail(std::string("malformed message: ") + e.getDescription().cStr());
  }
}

Result<std::unique_ptr<Subscriber>> Subscriber::connect(zmq::context_t& ctx, const std::vector<std::string>& endpoints,
                                                        const std::vector<std::string>& topics, int receive_hwm,
                                                        const TransportSecurity* security) {
  size_t tcp = static_cast<size_t>(std::count_if(endpoints.begin(), endpoints.end(), is_tcp));
  if (tcp > 0 && tcp != endpoints.size())
    return fail("cannot mix tcp:// (CurveZMQ) and other endpoints in one subscriber");
  if (tcp > 0 && (!security || !security->keys || security->keys->secret_key.empty() || security->server_key.empty()))
    return fail("connecting to a tcp:// endpoint needs CurveZMQ: --curve-keys (this program's key pair) and "
                "--curve-server-key (the publisher's public key)");
  try {
    zmq::socket_t socket(ctx, zmq::socket_type::sub);
    if (tcp > 0) {
      socket.set(zmq::sockopt::curve_serverkey, security->server_key);
      socket.set(zmq::sockopt::curve_publickey, security->keys->public_key);
      socket.set(zmq::sockopt::curve_secretkey, security->keys->secret_key);
    }
    socket.set(zmq::sockopt::rcvhwm, receive_hwm);
    socket.set(zmq::sockopt::linger, 0);
    // Reconnect quickly when a stage (re)starts: 10 ms, backing off to 1 s.
    socket.set(zmq::sockopt::reconnect_ivl, 10);
    socket.set(zmq::sockopt::reconnect_ivl_max, 1000);
    for (const auto& t : topics) socket.set(zmq::sockopt::subscribe, t);
    for (const auto& e : endpoints) socket.connect(e);
    return std::unique_ptr<Subscriber>(new Subscriber(std::move(socket)));
  } catch (const zmq::error_t& e) {
    return fail(std::string("cannot connect subscriber: ") + e.what());
  }
}

void Subscriber::subscribe(std::string_view topic) {
  socket_.set(zmq::sockopt::subscribe, std::string(topic));
}

void Subscriber::unsubscribe(std::string_view topic) {
  socket_.set(zmq::sockopt::unsubscribe, std::string(topic));
}

namespace {

// The fds of a kernel ring answer nobody took.
void close_answer_fds(const Subscriber::KernelRingAnswer& answer) {
  if (answer.fd >= 0) ::close(answer.fd);
  if (answer.wake_filter_fd >= 0) ::close(answer.wake_filter_fd);
}

}  // namespace

Subscriber::~Subscriber() {
  close_direct();
  if (ring_answer_) close_answer_fds(*ring_answer_);
}

void Subscriber::use_direct(std::string path, std::vector<std::string> topics) {
  close_direct();
  direct_path_ = std::move(path);
  direct_topics_ = std::move(topics);
  direct_last_attempt_ns_ = 0;
  (void)maintain_direct();
}

void Subscriber::close_direct() {
  if (direct_fd_ >= 0) ::close(direct_fd_);
  direct_fd_ = -1;
}

std::string Subscriber::maintain_direct() {
  if (direct_path_.empty() || direct_fd_ >= 0) return {};
  uint64_t now = boot_ns();
  if (direct_last_attempt_ns_ != 0 && now - direct_last_attempt_ns_ < uint64_t{kDirectRetryMs} * 1'000'000) return {};
  direct_last_attempt_ns_ = now;
  sockaddr_un addr{};
  if (direct_path_.size() >= sizeof(addr.sun_path)) return {};
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, direct_path_.data(), direct_path_.size());
  // Not there yet (the publisher is starting or restarting) is the common failure: ZeroMQ
  // carries every message meanwhile, and the next attempt comes after kDirectRetryMs.
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return {};
  }
  for (const auto& t : direct_topics_) {
    std::string msg(direct::kSubscribe);
    msg += t;
    if (::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size())) {
      ::close(fd);
      return {};
    }
  }
  direct_fd_ = fd;
  ++direct_connects_;
  return "connected";
}

int Subscriber::receive_direct(Received& out) {
  if (direct_fd_ < 0) return 0;
  // One system call per datagram: the buffer is as large as any datagram the publisher's
  // socket can hold (virtual memory: only the pages a message fills become resident).
  out.reserve_words(kDirectMaxBytes / sizeof(capnp::word));
  for (;;) {
    unsigned char header[direct::kHeaderBytes];
    iovec iov[2] = {{header, sizeof header}, {out.words_.get(), out.capacity_words_ * sizeof(capnp::word)}};
    alignas(cmsghdr) unsigned char control[CMSG_SPACE(2 * sizeof(int))];
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(direct_fd_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n <= 0) {  // 0: the publisher closed (stopped or restarted); < 0: the socket failed
      close_direct();
      ++direct_losses_;
      return -1;
    }
    // Only the kernel ring's answer carries fds (the ring's, then the wake filter's); one
    // anywhere else is closed, not leaked.
    int passed_fd = -1, passed_filter_fd = -1;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t fds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < fds; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (passed_fd < 0) {
          passed_fd = fd;
        } else if (passed_filter_fd < 0) {
          passed_filter_fd = fd;
        } else {
          ::close(fd);
        }
      }
    }
    auto bytes = static_cast<size_t>(n);
    size_t topic_len = header[1];
    if (bytes >= direct::kHeaderBytes && header[0] == direct::kVersion && topic_len == direct::kRingTopic.size() &&
        std::memcmp(header + 2, direct::kRingTopic.data(), topic_len) == 0 && (msg.msg_flags & MSG_TRUNC) == 0) {
      keep_ring_answer(reinterpret_cast<const unsigned char*>(out.words_.get()), bytes - direct::kHeaderBytes, passed_fd,
                       passed_filter_fd);
      continue;
    }
    if (passed_fd >= 0) ::close(passed_fd);
    if (passed_filter_fd >= 0) ::close(passed_filter_fd);
    size_t words = bytes > direct::kHeaderBytes ? (bytes - direct::kHeaderBytes) / sizeof(capnp::word) : 0;
    if ((msg.msg_flags & MSG_TRUNC) != 0 || words == 0 || bytes != direct::kHeaderBytes + words * sizeof(capnp::word) ||
        header[0] != direct::kVersion || topic_len > direct::kMaxTopicBytes) {
      ++malformed_;
      continue;
    }
    out.topic_.assign(reinterpret_cast<const char*>(header + 2), topic_len);
    out.direct_ = true;
    if (!out.adopt(words)) {
      ++malformed_;
      continue;
    }
    ++received_;
    ++direct_received_;
    return 1;
  }
}

void Subscriber::keep_ring_answer(const unsigned char* payload, size_t size, int fd, int filter_fd) {
  KernelRingAnswer answer;
  KernelRingAnswer passed;  // the fds that came with it
  passed.fd = fd;
  passed.wake_filter_fd = filter_fd;
  if (size < sizeof(uint64_t)) {
    close_answer_fds(passed);
    answer.refusal = "malformed kernel ring answer";
  } else {
    std::memcpy(&answer.bytes, payload, sizeof answer.bytes);
    std::string text(reinterpret_cast<const char*>(payload) + sizeof(uint64_t), size - sizeof(uint64_t));
    if (answer.bytes != 0 && fd >= 0) {
      answer.fd = fd;
      answer.wake_filter_fd = filter_fd;
      answer.publisher_id = std::move(text);
    } else {
      close_answer_fds(passed);
      answer.bytes = 0;
      answer.refusal = text.empty() ? "refused" : std::move(text);
    }
  }
  if (ring_answer_) close_answer_fds(*ring_answer_);  // an older one nobody took
  ring_answer_ = std::move(answer);
}

bool Subscriber::request_kernel_ring(std::string_view topic) {
  if (direct_fd_ < 0) return false;
  std::string msg(direct::kRingRequest);
  msg += topic;
  return ::send(direct_fd_, msg.data(), msg.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(msg.size());
}

std::optional<Subscriber::KernelRingAnswer> Subscriber::take_kernel_ring_answer() {
  auto answer = std::move(ring_answer_);
  ring_answer_.reset();
  return answer;
}

Subscriber::Wait Subscriber::wait(int extra_fd, long timeout_ms) {
  // The ZeroMQ socket, then the direct socket and the extra fd when there are.
  zmq::pollitem_t items[3];
  int n = 0;
  items[n++] = {socket_.handle(), 0, ZMQ_POLLIN, 0};
  const int direct = direct_fd_ >= 0 ? n : -1;
  if (direct >= 0) items[n++] = {nullptr, direct_fd_, ZMQ_POLLIN, 0};
  if (extra_fd >= 0) items[n++] = {nullptr, extra_fd, ZMQ_POLLIN, 0};
  int rc = zmq::poll(items, n, std::chrono::milliseconds(timeout_ms));
  if (rc <= 0) return Wait::kTimeout;
  if (items[0].revents & ZMQ_POLLIN) return Wait::kMessage;
  if (direct >= 0 && (items[direct].revents & (ZMQ_POLLIN | ZMQ_POLLERR))) return Wait::kMessage;
  return Wait::kFd;
}

int Subscriber::zmq_fd() { return socket_.get(zmq::sockopt::fd); }

bool Subscriber::try_receive(Received& out) {
  // The direct path first: its copy of a message is the earlier one.
  if (receive_direct(out) == 1) return true;
  for (;;) {
    auto got = socket_.recv(frame_, zmq::recv_flags::dontwait);
    if (!got) return false;
    bool ok = frame_.more();
    out.topic_.assign(static_cast<const char*>(frame_.data()), frame_.size());
    size_t parts = 1;
    zmq::message_t payload;
    // Tracked apart from frame_: once the payload is moved out of frame_, frame_.more()
    // no longer describes the message, and the frames after it must still be consumed
    // (else a third frame would be read as the next message's topic).
    bool more = frame_.more();
    while (more) {
      // The rest of a multipart message is already queued: these never block.
      (void)socket_.recv(frame_, zmq::recv_flags::none);
      ++parts;
      more = frame_.more();
      if (parts == 2) payload.move(frame_);
    }
    if (!ok || parts != 2 || !out.assign(out.topic_, payload.data(), payload.size())) {
      ++malformed_;
      continue;
    }
    ++received_;
    return true;
  }
}

uint64_t SequenceTracker::last(std::string_view publisher_id, std::string_view topic) const {
  auto it = last_.find(stream_key(publisher_id, topic));
  return it == last_.end() ? 0 : it->second;
}

void SequenceTracker::advance(std::string_view publisher_id, std::string_view topic, uint64_t sequence) {
  auto it = last_.find(stream_key(publisher_id, topic));
  if (it != last_.end() && sequence > it->second) it->second = sequence;
}

SequenceTracker::Observation SequenceTracker::observe(std::string_view publisher_id, std::string_view topic,
                                                      uint64_t sequence, bool gaps_expected) {
  std::string key = stream_key(publisher_id, topic);
  Observation obs;
  auto it = last_.find(key);
  if (it == last_.end()) {
    if (last_.size() >= kMaxTracked) last_.erase(last_.begin());
    last_.emplace(std::move(key), sequence);
    obs.new_publisher = true;
    return obs;
  }
  if (sequence > it->second + 1 && !gaps_expected) obs.lost = sequence - it->second - 1;
  if (sequence > it->second) it->second = sequence;
  total_lost_ += obs.lost;
  return obs;
}

}  // namespace cryptnono
