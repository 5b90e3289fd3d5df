// The Docker Engine API client: HTTP/1.1 over dockerd's unix socket, one short
// connection per request ("Connection: close"), every step bounded by the deadline.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "cryptnono/exporter/runtime_client.h"
#include "cryptnono/fd.h"

namespace cryptnono::exporter {

namespace {

using Clock = std::chrono::steady_clock;

// An inspect answer is a few KiB (more with many mounts or env vars); anything past
// this is not dockerd.
constexpr size_t kMaxResponseBytes = 4 << 20;

struct HttpResponse {
  int status = 0;
  std::string body;
};

LookupError timeout_error(std::string_view what) { return {"timeout", "docker: no answer in time (" + std::string(what) + ")"}; }

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Waits for `events` on fd until the deadline: true when ready.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

// Decodes a chunked body in place; false when it is malformed.
bool dechunk(std::string& body) {
  std::string out;
  size_t pos = 0;
  for (;;) {
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string::npos) return false;
    size_t size = 0;
    size_t i = pos;
    for (; i < eol; ++i) {
      char c = body[i];
      int digit = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
      if (digit < 0) break;  // chunk extensions (";...") are ignored
      if (size > kMaxResponseBytes) return false;
      size = size * 16 + static_cast<size_t>(digit);
    }
    if (i == pos) return false;
    pos = eol + 2;
    if (size == 0) break;
    if (pos + size + 2 > body.size()) return false;
    out.append(body, pos, size);
    pos += size + 2;
  }
  body = std::move(out);
  return true;
}

LookupResult<HttpResponse> get(const std::string& socket_path, const std::string& target, Clock::time_point deadline) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return tl::unexpected(LookupError{"error", std::string("docker: socket: ") + std::strerror(errno)});
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.data(), std::min(socket_path.size(), sizeof addr.sun_path - 1));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) {
      return tl::unexpected(
          LookupError{"unavailable", "docker: connect " + socket_path + ": " + std::strerror(errno)});
    }
    if (!wait_for(fd.get(), POLLOUT, deadline)) return tl::unexpected(timeout_error("connect"));
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      return tl::unexpected(LookupError{"unavailable", "docker: connect " + socket_path + ": " + std::strerror(err)});
    }
  }
  std::string request = "GET " + target + " HTTP/1.1\r\nHost: docker\r\nUser-Agent: cryptnono-exporter\r\n"
                        "Accept: application/json\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_for(fd.get(), POLLOUT, deadline)) return tl::unexpected(timeout_error("send"));
    } else {
      return tl::unexpected(LookupError{"unavailable", std::string("docker: send: ") + std::strerror(errno)});
    }
  }
  std::string raw;
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      raw.append(buf, static_cast<size_t>(n));
      if (raw.size() > kMaxResponseBytes) return tl::unexpected(LookupError{"error", "docker: answer too large"});
    } else if (n == 0) {
      break;
    } else if (errno == EAGAIN || errno == EINTR) {
      if (!wait_for(fd.get(), POLLIN, deadline)) return tl::unexpected(timeout_error("receive"));
    } else {
      return tl::unexpected(LookupError{"unavailable", std::string("docker: recv: ") + std::strerror(errno)});
    }
  }
  size_t head_end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos || raw.size() < 12) {
    return tl::unexpected(LookupError{"error", "docker: not an HTTP answer"});
  }
  HttpResponse response;
  response.status = std::atoi(raw.c_str() + 9);
  std::string head = raw.substr(0, head_end);
  for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  response.body = raw.substr(head_end + 4);
  if (head.find("\r\ntransfer-encoding: chunked") != std::string::npos && !dechunk(response.body)) {
    return tl::unexpected(LookupError{"error", "docker: malformed chunked answer"});
  }
  return response;
}

// dockerd's error bodies are {"message": "..."}.
std::string error_message(const std::string& body) {
  auto parsed = nlohmann::json::parse(body, nullptr, false);
  std::string message = parsed.is_object() && parsed.contains("message") && parsed["message"].is_string()
                            ? parsed["message"].get<std::string>()
                            : body.substr(0, 200);
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return message.substr(0, 300);
}

class DockerClient final : public RuntimeClient {
 public:
  explicit DockerClient(std::string socket_path) : socket_path_(std::move(socket_path)) {}

  std::string_view kind() const override { return "docker"; }

  LookupResult<ContainerInfo> inspect(const std::string& container_id, std::chrono::milliseconds timeout) override {
    auto deadline = Clock::now() + timeout;
    auto answer = get(socket_path_, "/containers/" + container_id + "/json", deadline);
    if (!answer) return tl::unexpected(answer.error());
    if (answer->status == 404) {
      return tl::unexpected(LookupError{"not_found", "docker: " + error_message(answer->body)});
    }
    if (answer->status != 200) {
      return tl::unexpected(
          LookupError{"error", "docker: HTTP " + std::to_string(answer->status) + ": " + error_message(answer->body)});
    }
    auto parsed = nlohmann::json::parse(answer->body, nullptr, false);
    if (!parsed.is_object()) return tl::unexpected(LookupError{"error", "docker: inspect answer is not JSON"});
    ContainerInfo info;
    auto config = parsed.find("Config");
    if (config != parsed.end() && config->is_object()) {
      auto labels = config->find("Labels");
      if (labels != config->end() && labels->is_object()) {
        for (const auto& [key, value] : labels->items()) {
          if (value.is_string()) add_label(info.labels, key, value.get_ref<const std::string&>());
        }
      }
      auto image = config->find("Image");
      if (image != config->end() && image->is_string()) info.image = image->get<std::string>();
    }
    // `docker run <id>` leaves only the id in Config.Image: the image's tags name it.
    std::string image_id = parsed.contains("Image") && parsed["Image"].is_string() ? parsed["Image"].get<std::string>() : "";
    if ((info.image.empty() || is_image_id(info.image)) && !image_id.empty() && remaining_ms(deadline) > 0) {
      auto image = get(socket_path_, "/images/" + image_id + "/json", deadline);
      if (image && image->status == 200) {
        auto img = nlohmann::json::parse(image->body, nullptr, false);
        if (img.is_object() && img.contains("RepoTags") && img["RepoTags"].is_array()) {
          for (const auto& tag : img["RepoTags"]) {
            if (tag.is_string() && !tag.get_ref<const std::string&>().empty()) {
              info.image = tag.get<std::string>();
              break;
            }
          }
        }
      }
      if (info.image.empty()) info.image = image_id;
    }
    if (info.image.size() > kMaxImageBytes) info.image.resize(kMaxImageBytes);
    return info;
  }

 private:
  std::string socket_path_;
};

}  // namespace

std::unique_ptr<RuntimeClient> make_docker_client(const std::string& socket_path) {
  return std::make_unique<DockerClient>(socket_path);
}

}  // namespace cryptnono::exporter
