// IP addresses for the flowkiller detector: parsing and printing, the public/non-public
// classification the fan-out rule uses, and the banned-destination list (addresses and
// CIDR networks, IPv4 and IPv6, read from plain-text files).
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what an AF_INET6 socket connecting to an
// IPv4 host reports) are judged as the IPv4 address they carry, so a ban on 1.2.3.4 also
// stops a dual-stack program that connects to ::ffff:1.2.3.4.
//
// Everything here is pure and thread-compatible (const methods may be called from
// several threads; building and lookups do not share state).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cryptnono/result.h"

namespace cryptnono::enforcer {

struct Address {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // network order; IPv4 uses bytes[0..3], the rest zero

  size_t size() const { return v6 ? 16 : 4; }
  bool operator==(const Address& o) const { return v6 == o.v6 && bytes == o.bytes; }
};

// From 4 or 16 network-order bytes (a ConnectEvent's destination); nullopt for any other size.
std::optional<Address> address_from_bytes(const void* data, size_t size);
// "1.2.3.4" or "2001:db8::1" (inet_pton rules: no zone ids, no leading zeros in v4).
std::optional<Address> parse_address(std::string_view text);
// "1.2.3.4" / "2001:db8::1" (RFC 5952 form, as inet_ntop writes it).
std::string format_address(const Address& a);
// "1.2.3.4:443" / "[2001:db8::1]:443".
std::string format_endpoint(const Address& a, uint16_t port);
// ::ffff:a.b.c.d -> a.b.c.d; any other address unchanged.
Address unmap_v4(const Address& a);

// False for destinations that say nothing about scanning the internet. After unmapping
// IPv4-mapped addresses, these are not public:
//   IPv4: 0.0.0.0/8 (unspecified, "this network"), 10.0.0.0/8, 172.16.0.0/12,
//         192.168.0.0/16 (private, RFC 1918), 100.64.0.0/10 (CGNAT, RFC 6598),
//         127.0.0.0/8 (loopback), 169.254.0.0/16 (link-local), 192.0.0.0/24 (IETF
//         protocol assignments), 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24
//         (documentation), 198.18.0.0/15 (benchmarking), 224.0.0.0/4 (multicast),
//         240.0.0.0/4 (reserved) and 255.255.255.255 (broadcast).
//   IPv6: :: (unspecified), ::1 (loopback), fe80::/10 (link-local), fec0::/10
//         (old site-local), fc00::/7 (unique local, i.e. private), ff00::/8
//         (multicast), 2001:db8::/32 (documentation), 100::/64 (discard), and the
//         IPv4 ranges above when embedded in 64:ff9b::/96 (NAT64).
// Python's ipaddress `is_private` (what cryptnono's flowkiller filters on) covers the same
// ranges except CGNAT and multicast, which are not the internet either.
bool is_public(const Address& a);

// One line of a banned-destinations file, parsed.
struct Network {
  Address address;  // host bits zero
  int prefix = 0;   // 0..32 or 0..128; 32/128 for a single address
  bool contains(const Address& a) const;
  // "1.2.3.4" for a single address, else "10.0.0.0/8": the entry as decisions name it.
  std::string text() const;
};

// "1.2.3.4", "10.0.0.0/8", "2001:db8::1", "2001:db8::/32". A network with host bits set
// ("10.0.0.1/8") is refused: it is usually a typo that would ban far more than meant.
Result<Network> parse_network(std::string_view text);

struct BannedEntry {
  Network network;
  std::string file;
  size_t line = 0;
};

// The parse of banned-destination files. Bad lines are reported and skipped, never fatal:
// one typo must not disarm the whole list.
struct BannedList {
  std::vector<BannedEntry> entries;
  std::vector<std::string> errors;  // "<file>:<line>: <reason>"
  std::vector<std::string> files;   // the files read, in order
};

// One address or network per line; '#' starts a comment (whole line or after the
// entry); blank lines and surrounding whitespace are ignored. Appends to `into`.
void parse_banned_text(std::string_view text, const std::string& file, BannedList& into);

// The files the glob patterns match now (regular files only, sorted per pattern,
// duplicates removed). A pattern without wildcards names a file that must exist.
struct Expanded {
  std::vector<std::string> files;
  std::vector<std::string> warnings;  // "pattern matched no file" and the like
};
Expanded expand_globs(const std::vector<std::string>& patterns);

// Banned destinations compiled for lookup: a hash set per prefix length in use, probed
// from the longest prefix down, so a lookup costs one hash probe per distinct prefix
// length (at most 33 for IPv4, 129 for IPv6) whatever the number of entries.
class BannedSet {
 public:
  BannedSet() = default;
  explicit BannedSet(const BannedList& list);

  // The most specific entry containing `a` (after unmapping), or nullptr.
  const BannedEntry* find(const Address& a) const;
  size_t size() const { return entries_.size(); }  // distinct networks

 private:
  struct Key {
    std::array<uint8_t, 16> bytes;
    bool operator==(const Key& o) const { return bytes == o.bytes; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Table {
    int prefix = 0;
    std::unordered_map<Key, size_t, KeyHash> index;  // masked address -> entries_ index
  };
  std::vector<BannedEntry> entries_;
  std::vector<Table> v4_, v6_;  // by decreasing prefix
};

}  // namespace cryptnono::enforcer
