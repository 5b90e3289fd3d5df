#include "cryptnono/enforcer/address.h"

#include <arpa/inet.h>
#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <set>

namespace cryptnono::enforcer {

namespace {

constexpr std::string_view kSpace = " \t\r\v\f";

std::string_view trim(std::string_view s) {
  size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(kSpace);
  return s.substr(b, e - b + 1);
}

// Zeroes every bit after the first `prefix` bits.
Address masked(const Address& a, int prefix) {
  Address out = a;
  size_t n = a.size();
  for (size_t i = 0; i < n; ++i) {
    int keep = prefix - static_cast<int>(i) * 8;
    if (keep >= 8) continue;
    out.bytes[i] = keep <= 0 ? 0 : static_cast<uint8_t>(a.bytes[i] & (0xffu << (8 - keep)));
  }
  return out;
}

bool in_v4(const Address& a, uint8_t b0, uint8_t b1, int prefix) {
  Address net;
  net.bytes[0] = b0;
  net.bytes[1] = b1;
  return masked(a, prefix).bytes == masked(net, prefix).bytes;
}

bool in_v4(const Address& a, uint8_t b0, uint8_t b1, uint8_t b2, int prefix) {
  Address net;
  net.bytes[0] = b0;
  net.bytes[1] = b1;
  net.bytes[2] = b2;
  return masked(a, prefix).bytes == masked(net, prefix).bytes;
}

bool public_v4(const Address& a) {
  const auto& b = a.bytes;
  if (b[0] == 0 || b[0] == 10 || b[0] == 127) return false;
  if (in_v4(a, 100, 64, 10)) return false;       // CGNAT
  if (in_v4(a, 169, 254, 16)) return false;      // link-local
  if (in_v4(a, 172, 16, 12)) return false;       // RFC 1918
  if (in_v4(a, 192, 168, 16)) return false;      // RFC 1918
  if (in_v4(a, 192, 0, 0, 24)) return false;     // IETF protocol assignments
  if (in_v4(a, 192, 0, 2, 24)) return false;     // TEST-NET-1
  if (in_v4(a, 198, 51, 100, 24)) return false;  // TEST-NET-2
  if (in_v4(a, 203, 0, 113, 24)) return false;   // TEST-NET-3
  if (in_v4(a, 198, 18, 15)) return false;       // benchmarking
  if (b[0] >= 224) return false;                 // multicast, reserved, broadcast
  return true;
}

Address v4_from(const uint8_t* p) {
  Address a;
  std::memcpy(a.bytes.data(), p, 4);
  return a;
}

}  // namespace

std::optional<Address> address_from_bytes(const void* data, size_t size) {
  if (size != 4 && size != 16) return std::nullopt;
  Address a;
  a.v6 = size == 16;
  std::memcpy(a.bytes.data(), data, size);
  return a;
}

std::optional<Address> parse_address(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
  std::string s(text);  // inet_pton needs a NUL-terminated string
  Address a;
  if (s.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
    return a;
  }
  a.v6 = true;
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
  return a;
}

std::string format_address(const Address& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(a.v6 ? AF_INET6 : AF_INET, a.bytes.data(), buf, sizeof buf) == nullptr) return "?";
  return buf;
}

std::string format_endpoint(const Address& a, uint16_t port) {
  std::string host = format_address(a);
  return (a.v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Address unmap_v4(const Address& a) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (!a.v6 || std::memcmp(a.bytes.data(), kMapped, 12) != 0) return a;
  return v4_from(a.bytes.data() + 12);
}

bool is_public(const Address& addr) {
  Address a = unmap_v4(addr);
  if (!a.v6) return public_v4(a);
  const auto& b = a.bytes;
  static constexpr uint8_t kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(b.data(), kNat64, 12) == 0) return public_v4(v4_from(b.data() + 12));
  bool zero_head = std::all_of(b.begin(), b.begin() + 15, [](uint8_t x) { return x == 0; });
  if (zero_head && (b[15] == 0 || b[15] == 1)) return false;  // :: and ::1
  if (b[0] == 0xff) return false;                              // multicast
  if ((b[0] & 0xfe) == 0xfc) return false;                     // fc00::/7 unique local
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return false;     // fe80::/10 link-local
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return false;     // fec0::/10 site-local
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return false;  // 2001:db8::/32
  static constexpr uint8_t kDiscard[8] = {0x01, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(b.data(), kDiscard, 8) == 0) return false;  // 100::/64
  return true;
}

bool Network::contains(const Address& a) const {
  Address u = unmap_v4(a);
  return u.v6 == address.v6 && masked(u, prefix).bytes == address.bytes;
}

std::string Network::text() const {
  int full = address.v6 ? 128 : 32;
  std::string s = format_address(address);
  return prefix == full ? s : s + "/" + std::to_string(prefix);
}

Result<Network> parse_network(std::string_view text) {
  size_t slash = text.find('/');
  auto addr = parse_address(text.substr(0, slash));
  if (!addr) return fail("not an IPv4 or IPv6 address: \"" + std::string(text.substr(0, slash)) + "\"");
  Network n;
  int full = addr->v6 ? 128 : 32;
  n.prefix = full;
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    int prefix = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || prefix < 0 || prefix > full ||
        (digits.size() > 1 && digits[0] == '0'))
      return fail("bad prefix length \"/" + std::string(digits) + "\" (0.." + std::to_string(full) + ")");
    n.prefix = prefix;
  }
  // IPv4-mapped entries are stored as the IPv4 network they mean.
  Address a = *addr;
  if (a.v6 && n.prefix >= 96) {
    Address u = unmap_v4(a);
    if (!u.v6) {
      a = u;
      n.prefix -= 96;
    }
  }
  n.address = masked(a, n.prefix);
  if (n.address.bytes != a.bytes) {
    Network suggestion = n;
    return fail("host bits set (the network is " + suggestion.text() + ")");
  }
  return n;
}

void parse_banned_text(std::string_view text, const std::string& file, BannedList& into) {
  size_t line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    ++line_no;
    pos = nl + 1;
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) {
      if (nl == text.size()) break;
      continue;
    }
    auto net = parse_network(line);
    if (net) {
      into.entries.push_back({*net, file, line_no});
    } else {
      // Cut what a hostile or binary file could put into a log line.
      std::string reason = net.error().message;
      if (reason.size() > 200) reason = reason.substr(0, 200) + "...";
      into.errors.push_back(file + ":" + std::to_string(line_no) + ": " + reason);
    }
    if (nl == text.size()) break;
  }
}

Expanded expand_globs(const std::vector<std::string>& patterns) {
  Expanded out;
  std::set<std::string> seen;
  for (const auto& pattern : patterns) {
    glob_t g{};
    int rc = ::glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g);
    std::vector<std::string> matched;
    if (rc == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) {
        struct stat st {};
        // stat follows symlinks: a ConfigMap's files are symlinks into ..data/.
        if (::stat(g.gl_pathv[i], &st) == 0 && S_ISREG(st.st_mode)) matched.emplace_back(g.gl_pathv[i]);
      }
    }
    globfree(&g);
    std::sort(matched.begin(), matched.end());
    if (matched.empty()) out.warnings.push_back(pattern + ": matches no file");
    for (auto& m : matched)
      if (seen.insert(m).second) out.files.push_back(std::move(m));
  }
  return out;
}

size_t BannedSet::KeyHash::operator()(const Key& k) const {
  // FNV-1a over the 16 bytes: cheap, and keys are not attacker-chosen in bulk (they come
  // from the operator's files; lookups probe with masked destination addresses).
  uint64_t h = 1469598103934665603ull;
  for (uint8_t b : k.bytes) h = (h ^ b) * 1099511628211ull;
  return static_cast<size_t>(h);
}

BannedSet::BannedSet(const BannedList& list) {
  for (const auto& e : list.entries) {
    auto& tables = e.network.address.v6 ? v6_ : v4_;
    auto t = std::find_if(tables.begin(), tables.end(), [&](const Table& x) { return x.prefix == e.network.prefix; });
    if (t == tables.end()) {
      tables.push_back(Table{e.network.prefix, {}});
      t = tables.end() - 1;
    }
    // The first file and line naming a network wins; duplicates are not errors.
    if (t->index.emplace(Key{e.network.address.bytes}, entries_.size()).second) entries_.push_back(e);
  }
  auto longest_first = [](const Table& a, const Table& b) { return a.prefix > b.prefix; };
  std::sort(v4_.begin(), v4_.end(), longest_first);
  std::sort(v6_.begin(), v6_.end(), longest_first);
}

const BannedEntry* BannedSet::find(const Address& addr) const {
  Address a = unmap_v4(addr);
  for (const auto& t : a.v6 ? v6_ : v4_) {
    auto it = t.index.find(Key{masked(a, t.prefix).bytes});
    if (it != t.index.end()) return &entries_[it->second];
  }
  return nullptr;
}

}  // namespace cryptnono::enforcer
