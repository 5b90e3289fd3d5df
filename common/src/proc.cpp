#include "cryptnono/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace cryptnono {

namespace {

Result<std::string> read_file(const std::string& path, size_t max_bytes, bool* truncated) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(path + ": " + std::strerror(errno));
  std::string out;
  size_t chunk = 4096;
  for (;;) {
    size_t old = out.size();
    size_t want = std::min(chunk, max_bytes + 1 - old);  // +1 detects "more than max"
    out.resize(old + want);
    ssize_t n = ::read(fd, out.data() + old, want);
    if (n < 0) {
      if (errno == EINTR) {
        out.resize(old);
        continue;
      }
      int err = errno;
      ::close(fd);
      return fail(path + ": " + std::strerror(err));
    }
    out.resize(old + static_cast<size_t>(n));
    if (n == 0) break;
    if (out.size() > max_bytes) break;
    chunk = std::min<size_t>(chunk * 2, 1u << 20);
  }
  ::close(fd);
  if (truncated != nullptr) *truncated = out.size() > max_bytes;
  if (out.size() > max_bytes) out.resize(max_bytes);
  return out;
}

}  // namespace

std::string ProcReader::path(pid_t pid, const char* leaf) const {
  return root_ + "/" + std::to_string(pid) + "/" + leaf;
}

std::vector<pid_t> ProcReader::list_pids() const {
  std::vector<pid_t> pids;
  DIR* dir = opendir(root_.c_str());
  if (dir == nullptr) return pids;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    long v = std::strtol(e->d_name, &end, 10);
    if (end != e->d_name && *end == '\0' && v > 0) pids.push_back(static_cast<pid_t>(v));
  }
  closedir(dir);
  std::sort(pids.begin(), pids.end());
  return pids;
}

Result<ProcStat> ProcReader::stat(pid_t pid) const {
  auto text = read_file(path(pid, "stat"), 4096, nullptr);
  if (!text) return tl::unexpected(text.error());
  // comm is in parentheses and may itself contain ") ": the last ')' ends it.
  auto open = text->find('(');
  auto close = text->rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open)
    return fail(path(pid, "stat") + ": unparsable");
  ProcStat st;
  st.pid = pid;
  st.comm = text->substr(open + 1, close - open - 1);
  // Fields after comm, numbered from 3 (state).
  std::vector<std::string_view> fields;
  std::string_view rest(*text);
  rest.remove_prefix(close + 1);
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && rest[i] == ' ') ++i;
    size_t j = i;
    while (j < rest.size() && rest[j] != ' ' && rest[j] != '\n') ++j;
    if (j > i) fields.push_back(rest.substr(i, j - i));
    i = j + 1;
  }
  if (fields.size() < 20) return fail(path(pid, "stat") + ": too few fields");
  auto num = [&](size_t field_no) { return std::strtoull(std::string(fields[field_no - 3]).c_str(), nullptr, 10); };
  st.state = fields[0].empty() ? '?' : fields[0][0];
  st.ppid = static_cast<pid_t>(num(4));
  st.flags = num(9);
  st.start_ticks = num(22);
  return st;
}

Result<std::string> ProcReader::cmdline(pid_t pid, size_t max_bytes, bool* truncated) const {
  return read_file(path(pid, "cmdline"), max_bytes, truncated);
}

Result<std::pair<uint32_t, uint32_t>> ProcReader::ids(pid_t pid) const {
  auto text = read_file(path(pid, "status"), 1 << 16, nullptr);
  if (!text) return tl::unexpected(text.error());
  uint32_t uid = 0, gid = 0;
  bool have_uid = false, have_gid = false;
  size_t pos = 0;
  while (pos < text->size()) {
    size_t eol = text->find('\n', pos);
    if (eol == std::string::npos) eol = text->size();
    std::string_view line(text->data() + pos, eol - pos);
    if (line.rfind("Uid:", 0) == 0) {
      uid = static_cast<uint32_t>(std::strtoul(std::string(line.substr(4)).c_str(), nullptr, 10));
      have_uid = true;
    } else if (line.rfind("Gid:", 0) == 0) {
      gid = static_cast<uint32_t>(std::strtoul(std::string(line.substr(4)).c_str(), nullptr, 10));
      have_gid = true;
    }
    pos = eol + 1;
  }
  if (!have_uid || !have_gid) return fail(path(pid, "status") + ": no Uid/Gid");
  return std::make_pair(uid, gid);
}

Result<std::string> ProcReader::cgroup(pid_t pid) const {
  auto text = read_file(path(pid, "cgroup"), 1 << 16, nullptr);
  if (!text) return tl::unexpected(text.error());
  std::string v1;
  size_t pos = 0;
  while (pos < text->size()) {
    size_t eol = text->find('\n', pos);
    if (eol == std::string::npos) eol = text->size();
    std::string_view line(text->data() + pos, eol - pos);
    pos = eol + 1;
    auto c1 = line.find(':');
    auto c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string_view::npos) continue;
    std::string_view cg = line.substr(c2 + 1);
    if (line.substr(0, c2 + 1) == "0::" && cg != "/") return std::string(cg);
    if (v1.empty() && cg.size() > 1) v1 = std::string(cg);
  }
  return v1.empty() ? std::string("/") : v1;
}

Result<std::string> ProcReader::exe(pid_t pid) const {
  std::string p = path(pid, "exe");
  char buf[4096];
  ssize_t n = ::readlink(p.c_str(), buf, sizeof buf);
  if (n < 0) return fail(p + ": " + std::strerror(errno));
  return std::string(buf, static_cast<size_t>(n));
}

uint64_t clock_ticks_per_second() {
  long hz = sysconf(_SC_CLK_TCK);
  return hz > 0 ? static_cast<uint64_t>(hz) : 100;
}

std::string cgroup_tail(const std::string& path, int components) {
  std::vector<std::string_view> parts;
  std::string_view p(path);
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    if (j > i) parts.emplace_back(p.substr(i, j - i));
    i = j + 1;
  }
  std::string out;
  size_t start = parts.size() > static_cast<size_t>(components) ? parts.size() - static_cast<size_t>(components) : 0;
  for (size_t k = start; k < parts.size(); ++k) {
    if (!out.empty()) out += '/';
    out += parts[k];
  }
  return out;
}

}  // namespace cryptnono
