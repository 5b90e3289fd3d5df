#include "cryptnono/exporter/http_server.h"

#include <arpa/inet.h>
#include <signal.h>

#include <charconv>
#include <cstring>
#include <string_view>

#include <civetweb.h>

namespace cryptnono::exporter {

namespace {

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

void respond(mg_connection* conn, int status, std::string_view content_type, std::string_view body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
            "Connection: close\r\n\r\n",
            status, reason_phrase(status), static_cast<int>(content_type.size()), content_type.data(), body.size());
  mg_write(conn, body.data(), body.size());
}

}  // namespace

Result<void> validate_listen_address(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return fail("metrics address '" + address + "' is not HOST:PORT");
  }
  std::string host = address.substr(0, colon);
  std::string_view port = std::string_view(address).substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return fail("metrics address '" + address + "': port must be a number from 0 to 65535");
  }
  // civetweb takes numeric addresses only (no names), IPv6 in brackets.
  unsigned char buf[sizeof(in6_addr)];
  bool ok = false;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    ok = inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), buf) == 1;
  } else {
    ok = inet_pton(AF_INET, host.c_str(), buf) == 1;
  }
  if (!ok) return fail("metrics address '" + address + "': host must be an IPv4 address or [IPv6] address");
  return {};
}

Result<std::unique_ptr<HttpServer>> HttpServer::start(const std::string& address, HttpHandlers handlers) {
  if (auto ok = validate_listen_address(address); !ok) return tl::unexpected(ok.error());
  std::unique_ptr<HttpServer> server(new HttpServer(std::move(handlers)));
  const char* options[] = {
      "listening_ports", address.c_str(),
      "num_threads", "2",
      "max_request_size", "4096",   // request line + headers; no handler reads a body
      "request_timeout_ms", "10000",
      "enable_keep_alive", "no",
      nullptr,
  };
  mg_callbacks callbacks{};
  callbacks.begin_request = &HttpServer::handle;
  callbacks.log_message = [](const mg_connection*, const char*) { return 1; };  // no stderr noise per bad request
  // mg_start sets SIGCHLD (and SIGPIPE) to SIG_IGN. We run no CGI, and an ignored SIGCHLD
  // would make waitpid() elsewhere in the process fail, so put SIGCHLD back.
  struct sigaction old_chld {};
  sigaction(SIGCHLD, nullptr, &old_chld);
  mg_init_library(0);
  server->ctx_ = mg_start(&callbacks, server.get(), options);
  sigaction(SIGCHLD, &old_chld, nullptr);
  if (server->ctx_ == nullptr) {
    mg_exit_library();
    return fail("cannot listen on " + address + " (in use, or not an address of this host)");
  }
  mg_server_port ports[4] = {};
  int n = mg_get_server_ports(server->ctx_, 4, ports);
  if (n > 0) server->port_ = ports[0].port;
  return server;
}

HttpServer::~HttpServer() {
  if (ctx_ != nullptr) {
    mg_stop(ctx_);
    mg_exit_library();
  }
}

int HttpServer::handle(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  auto* self = static_cast<HttpServer*>(info->user_data);
  std::string_view method = info->request_method != nullptr ? info->request_method : "";
  std::string_view uri = info->local_uri != nullptr ? info->local_uri : "";
  try {
    if (method == "GET" && uri == "/metrics") {
      respond(conn, 200, "text/plain; version=0.0.4; charset=utf-8", self->handlers_.metrics());
      return 200;
    }
    if (method == "GET" && uri == "/healthz") {
      auto response = self->handlers_.health();
      respond(conn, response.status, "text/plain; charset=utf-8", response.body);
      return response.status;
    }
  } catch (const std::exception& e) {
    // An exception must not unwind into civetweb's C code.
    respond(conn, 500, "text/plain; charset=utf-8", std::string("internal error: ") + e.what() + "\n");
    return 500;
  }
  respond(conn, 404, "text/plain; charset=utf-8", "not found\n");
  return 404;
}

}  // namespace cryptnono::exporter
