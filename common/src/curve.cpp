#include "cryptnono/curve.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <sstream>

namespace cryptnono {
namespace {

constexpr size_t kZ85KeyLength = 40;  // 32 bytes in Z85

bool valid_z85_key(std::string_view key) {
  if (key.size() != kZ85KeyLength) return false;
  std::array<uint8_t, 32> raw{};
  std::string copy(key);
  return zmq_z85_decode(raw.data(), copy.c_str()) != nullptr;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(path + ": cannot read: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

Result<CurveKeyPair> generate_curve_key_pair() {
  char pub[kZ85KeyLength + 1], sec[kZ85KeyLength + 1];
  if (zmq_curve_keypair(pub, sec) != 0)
    return fail(std::string("cannot make a CurveZMQ key pair: ") + zmq_strerror(zmq_errno()));
  return CurveKeyPair{pub, sec};
}

std::string format_curve_key_file(const CurveKeyPair& keys, bool with_secret) {
  std::string out = with_secret ? "# cryptnono CurveZMQ key pair: keep this file secret\n"
                                : "# cryptnono CurveZMQ public key: safe to share\n";
  out += "public-key = \"" + keys.public_key + "\"\n";
  if (with_secret) out += "secret-key = \"" + keys.secret_key + "\"\n";
  return out;
}

Result<CurveKeyPair> parse_curve_key_file(std::string_view text, const std::string& name) {
  CurveKeyPair keys;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    line = trim(line);
    // Comments are whole lines only: '#' is one of Z85's characters.
    if (line.empty() || line.front() == '#') continue;
    // zcert files nest keys under a "curve" section; the section header itself is skipped.
    if (line == "curve" || line == "metadata") continue;
    size_t eq = line.find('=');
    if (eq == std::string_view::npos)
      return fail(name + ":" + std::to_string(line_no) + ": expected `public-key = \"...\"` or `secret-key = \"...\"`");
    std::string_view key = trim(line.substr(0, eq));
    std::string_view value = trim(line.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    std::string* slot = key == "public-key" ? &keys.public_key : key == "secret-key" ? &keys.secret_key : nullptr;
    if (!slot) continue;  // other zcert metadata
    if (!valid_z85_key(value))
      return fail(name + ":" + std::to_string(line_no) + ": " + std::string(key) +
                  " is not a 40-character Z85 CurveZMQ key");
    *slot = std::string(value);
  }
  if (keys.public_key.empty()) return fail(name + ": no public-key line");
  if (!keys.secret_key.empty()) {
    // The public half must belong to the secret half, or the peer's configured server key
    // would silently never match.
    char derived[kZ85KeyLength + 1];
    if (zmq_curve_public(derived, keys.secret_key.c_str()) != 0 || keys.public_key != derived)
      return fail(name + ": public-key does not belong to secret-key");
  }
  return keys;
}

Result<CurveKeyPair> read_curve_key_file(const std::string& path, bool require_secret) {
  auto text = read_file(path);
  if (!text) return tl::unexpected(text.error());
  auto keys = parse_curve_key_file(*text, path);
  if (!keys) return keys;
  if (require_secret && keys->secret_key.empty()) return fail(path + ": no secret-key line (need the key pair file)");
  return keys;
}

Result<std::vector<std::string>> read_authorized_keys(const std::vector<std::string>& paths) {
  std::vector<std::string> keys;
  for (const auto& path : paths) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return fail(path + ": " + std::strerror(errno));
    std::vector<std::string> files;
    if (S_ISDIR(st.st_mode)) {
      DIR* dir = opendir(path.c_str());
      if (!dir) return fail(path + ": cannot list: " + std::strerror(errno));
      while (auto* entry = readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        std::string file = path + "/" + entry->d_name;
        struct stat fst {};
        if (stat(file.c_str(), &fst) == 0 && S_ISREG(fst.st_mode)) files.push_back(file);
      }
      closedir(dir);
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(path);
    }
    for (const auto& file : files) {
      auto pair = read_curve_key_file(file, /*require_secret=*/false);
      if (!pair) return tl::unexpected(pair.error());
      keys.push_back(pair->public_key);
    }
  }
  return keys;
}

Result<TransportSecurity> CurveOptions::load() const {
  TransportSecurity security;
  if (!keys_file.empty()) {
    auto keys = read_curve_key_file(keys_file, /*require_secret=*/true);
    if (!keys) return tl::unexpected(keys.error());
    security.keys = *keys;
  }
  if (!authorized.empty()) {
    auto keys = read_authorized_keys(authorized);
    if (!keys) return tl::unexpected(keys.error());
    security.authorized = std::move(*keys);
  }
  if (!server_key_file.empty()) {
    auto key = read_curve_key_file(server_key_file, /*require_secret=*/false);
    if (!key) return tl::unexpected(key.error());
    security.server_key = key->public_key;
  }
  if ((!security.authorized.empty() || !security.server_key.empty()) && !security.keys)
    return fail("--curve-authorized and --curve-server-key need --curve-keys (this program's own key pair)");
  return security;
}

Result<void> check_publish_endpoints(const std::vector<std::string>& endpoints, const TransportSecurity& security) {
  for (const auto& ep : endpoints) {
    if (ep.rfind("tcp://", 0) != 0) continue;
    if (!security.keys || security.keys->secret_key.empty())
      return fail(ep + ": a tcp:// endpoint needs CurveZMQ: --curve-keys (this program's key pair) and "
                       "--curve-authorized (the clients allowed in)");
    if (security.authorized.empty())
      return fail(ep + ": no authorized client keys (--curve-authorized): nobody could connect");
  }
  return {};
}

// ---- ZAP handler -------------------------------------------------------------------

namespace {
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";  // fixed by RFC 27
}

Result<std::unique_ptr<ZapHandler>> ZapHandler::start(zmq::context_t& ctx, std::vector<std::string> authorized) {
  try {
    zmq::socket_t rep(ctx, zmq::socket_type::rep);
    rep.set(zmq::sockopt::linger, 0);
    rep.bind(kZapEndpoint);
    // The stop signal is a message on an inproc pair: the thread blocks in one zmq_poll on
    // both sockets, with no timed polling.
    std::string stop_ep = "inproc://cryptnono-zap-stop-" + std::to_string(reinterpret_cast<uintptr_t>(&rep));
    zmq::socket_t stop_rx(ctx, zmq::socket_type::pair);
    stop_rx.bind(stop_ep);
    zmq::socket_t stop_tx(ctx, zmq::socket_type::pair);
    stop_tx.connect(stop_ep);
    std::set<std::string> keys(authorized.begin(), authorized.end());
    auto handler = std::unique_ptr<ZapHandler>(
        new ZapHandler(std::move(rep), std::move(stop_rx), std::move(stop_tx), std::move(keys)));
    handler->thread_ = std::thread([h = handler.get()] { h->run(); });
    return handler;
  } catch (const zmq::error_t& e) {
    return fail(std::string("cannot start the CurveZMQ authenticator: ") + e.what());
  }
}

ZapHandler::ZapHandler(zmq::socket_t rep, zmq::socket_t stop_rx, zmq::socket_t stop_tx,
                       std::set<std::string> authorized)
    : rep_(std::move(rep)), stop_rx_(std::move(stop_rx)), stop_tx_(std::move(stop_tx)), authorized_(std::move(authorized)) {}

ZapHandler::~ZapHandler() {
  if (thread_.joinable()) {
    try {
      stop_tx_.send(zmq::str_buffer("stop"), zmq::send_flags::none);
    } catch (const zmq::error_t&) {
    }
    thread_.join();
  }
}

void ZapHandler::run() {
  for (;;) {
    zmq::pollitem_t items[2] = {{rep_.handle(), 0, ZMQ_POLLIN, 0}, {stop_rx_.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(-1));
    } catch (const zmq::error_t&) {
      return;  // context terminated
    }
    if (items[1].revents & ZMQ_POLLIN) return;
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    // Request (RFC 27): version, request id, domain, address, identity, mechanism, then
    // the mechanism's credentials (CURVE: the client's 32-byte public key).
    std::vector<zmq::message_t> frames;
    try {
      for (;;) {
        zmq::message_t frame;
        if (!rep_.recv(frame, zmq::recv_flags::none)) break;
        bool more = frame.more();
        frames.push_back(std::move(frame));
        if (!more) break;
      }
    } catch (const zmq::error_t&) {
      return;
    }
    auto text = [&](size_t i) { return i < frames.size() ? frames[i].to_string() : std::string(); };
    bool ok = false;
    if (frames.size() >= 7 && text(0) == "1.0" && text(5) == "CURVE" && frames[6].size() == 32) {
      char z85[kZ85KeyLength + 1];
      if (zmq_z85_encode(z85, static_cast<const uint8_t*>(frames[6].data()), 32))
        ok = authorized_.count(z85) > 0;
    }
    (ok ? accepted_ : denied_).fetch_add(1);
    try {
      rep_.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
      rep_.send(zmq::buffer(text(1)), zmq::send_flags::sndmore);
      rep_.send(zmq::buffer(std::string(ok ? "200" : "400")), zmq::send_flags::sndmore);
      rep_.send(zmq::buffer(std::string(ok ? "OK" : "client key not authorized")), zmq::send_flags::sndmore);
      rep_.send(zmq::str_buffer(""), zmq::send_flags::sndmore);  // user id
      rep_.send(zmq::str_buffer(""), zmq::send_flags::none);      // metadata
    } catch (const zmq::error_t&) {
      return;
    }
  }
}

}  // namespace cryptnono
