// A tiny HTTP server for exactly two resources: GET /metrics and GET /healthz. Anything
// else (other paths, other methods) gets 404.
//
// Built on civetweb directly rather than prometheus-cpp's Exposer, because the Exposer
// cannot serve a /healthz of our own. Requests are capped (4 KiB of headers, 10 s), two
// worker threads, no keep-alive, no file serving: the port is reachable by anything on
// the node network, so it offers as little as it can.
//
// Thread safety: the handlers run on civetweb's worker threads, concurrently with each
// other and with the rest of the program; they must be thread-safe. Destroying the
// server stops it and waits for running handlers to return.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "cryptnono/result.h"

struct mg_context;
struct mg_connection;

namespace cryptnono::exporter {

struct HttpResponse {
  int status = 200;
  std::string body;
};

struct HttpHandlers {
  std::function<std::string()> metrics;  // Prometheus text format body
  std::function<HttpResponse()> health;
};

// "HOST:PORT" (IPv6 as "[::1]:PORT"): checks the form civetweb will accept, 0 <= PORT <= 65535.
Result<void> validate_listen_address(const std::string& address);

class HttpServer {
 public:
  // Listens on address (port 0: an ephemeral port, see port()).
  static Result<std::unique_ptr<HttpServer>> start(const std::string& address, HttpHandlers handlers);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }

 private:
  explicit HttpServer(HttpHandlers handlers) : handlers_(std::move(handlers)) {}
  static int handle(mg_connection* conn);

  HttpHandlers handlers_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
};

}  // namespace cryptnono::exporter
