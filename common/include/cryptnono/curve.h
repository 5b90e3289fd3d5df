// Who may connect over tcp:// (CurveZMQ). ipc:// sockets are protected by the file system
// (a 0700 directory, 0660 socket files: see transport.h); a tcp:// endpoint, used to attach
// remote forensics subscribers, is reachable by anyone on the network, so it is refused
// unless it is encrypted and authenticated with CurveZMQ:
//   - the publisher (server) holds a key pair and a list of authorized client public keys;
//     a ZAP handler (RFC 27) on its ZeroMQ context accepts exactly those clients, so an
//     unknown peer completes no handshake and receives nothing;
//   - a subscriber (client) holds its own key pair and the server's public key.
//
// Key files are text, one `public-key = "<Z85>"` line and, in a secret file only,
// one `secret-key = "<Z85>"` line (the layout of ZeroMQ's zcert files, so keys made by
// `cryptnono keygen` or by czmq tools both work). In Kubernetes they
// come from a Secret mounted as files. Comments are whole lines starting with `#` (Z85 itself
// uses `#`, so a comment cannot follow a key).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "cryptnono/result.h"

namespace cryptnono {

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters; empty when only the public half is known
};

Result<CurveKeyPair> generate_curve_key_pair();
// Text of a key file; the secret line only when with_secret.
std::string format_curve_key_file(const CurveKeyPair& keys, bool with_secret);
// Parses a key file's text; `name` is used in errors ("<name>:<line>: <reason>").
Result<CurveKeyPair> parse_curve_key_file(std::string_view text, const std::string& name);
// Reads a key file. require_secret: the file must hold the secret key too.
Result<CurveKeyPair> read_curve_key_file(const std::string& path, bool require_secret);
// Public keys from files and directories (every regular file in a directory whose name
// does not start with '.', which skips Kubernetes' ..data bookkeeping). Errors name the file.
Result<std::vector<std::string>> read_authorized_keys(const std::vector<std::string>& paths);

// What a stage uses for its tcp:// endpoints. Empty: tcp:// is refused.
struct TransportSecurity {
  std::optional<CurveKeyPair> keys;         // this stage's own pair (server or client)
  std::vector<std::string> authorized;      // publisher: client public keys allowed in
  std::string server_key;                   // subscriber: the tcp publisher's public key
};

// Command-line form, shared by every binary (see add_curve_options in curve_cli.h).
struct CurveOptions {
  std::string keys_file;                // --curve-keys: own key pair (secret file)
  std::vector<std::string> authorized;  // --curve-authorized: files/dirs of client public keys
  std::string server_key_file;          // --curve-server-key: the publisher's public key file
  Result<TransportSecurity> load() const;
};

// What Publisher::bind / add_endpoint would refuse, checked up front (for --check and
// before anything is loaded): a tcp:// endpoint without this program's key pair or without
// authorized client keys.
Result<void> check_publish_endpoints(const std::vector<std::string>& endpoints, const TransportSecurity& security);

// Answers ZeroMQ's authentication requests for one context: CURVE clients whose public key
// is in the authorized set are accepted, every other request is refused. One per context
// (ZeroMQ allows one handler per context); must be running before a CURVE server socket
// binds. Thread-safe counters; the destructor stops the thread.
class ZapHandler {
 public:
  static Result<std::unique_ptr<ZapHandler>> start(zmq::context_t& ctx, std::vector<std::string> authorized);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  uint64_t accepted() const { return accepted_.load(); }
  uint64_t denied() const { return denied_.load(); }

 private:
  ZapHandler(zmq::socket_t rep, zmq::socket_t stop_rx, zmq::socket_t stop_tx, std::set<std::string> authorized);
  void run();

  zmq::socket_t rep_;
  zmq::socket_t stop_rx_;
  zmq::socket_t stop_tx_;
  std::set<std::string> authorized_;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> denied_{0};
  std::thread thread_;
};

}  // namespace cryptnono
