// The flowkiller's addresses: banned-destination files (table-driven, with line numbers),
// CIDR lookups, and which destinations count as public.
#include <gtest/gtest.h>

#include <filesystem>

#include "cryptnono/enforcer/address.h"
#include "enforcer_test_util.h"

namespace cryptnono::enforcer {
namespace {

Address addr(const std::string& text) {
  auto a = parse_address(text);
  EXPECT_TRUE(a) << text;
  return a.value_or(Address{});
}

TEST(ParseNetwork, AcceptsAddressesAndCidrInBothFamilies) {
  struct Case {
    const char* text;
    const char* canonical;  // Network::text()
    int prefix;
    bool v6;
  };
  const Case cases[] = {
      {"1.2.3.4", "1.2.3.4", 32, false},
      {"1.2.3.4/32", "1.2.3.4", 32, false},
      {"127.77.0.0/16", "127.77.0.0/16", 16, false},
      {"0.0.0.0/0", "0.0.0.0/0", 0, false},
      {"10.0.0.0/8", "10.0.0.0/8", 8, false},
      {"2001:db8::1", "2001:db8::1", 128, true},
      {"2001:DB8:0:0::/32", "2001:db8::/32", 32, true},
      {"::/0", "::/0", 0, true},
      {"fe80::/10", "fe80::/10", 10, true},
      // IPv4-mapped entries mean the IPv4 address.
      {"::ffff:1.2.3.4", "1.2.3.4", 32, false},
      {"::ffff:10.0.0.0/104", "10.0.0.0/8", 8, false},
  };
  for (const auto& c : cases) {
    auto n = parse_network(c.text);
    ASSERT_TRUE(n) << c.text << ": " << n.error().message;
    EXPECT_EQ(n->text(), c.canonical) << c.text;
    EXPECT_EQ(n->prefix, c.prefix) << c.text;
    EXPECT_EQ(n->address.v6, c.v6) << c.text;
  }
}

TEST(ParseBannedText, SkipsCommentsAndBlanksAndReportsBadLinesWithTheirNumbers) {
  const std::string text =
      "# banned pools\n"          // 1
      "\n"                        // 2
      "  1.2.3.4  \n"             // 3
      "5.6.7.0/24 # a comment\n"  // 4
      "\t2001:db8:1::/48\r\n"     // 5 (CRLF files are common)
      "not-an-ip\n"               // 6
      "1.2.3.4/33\n"              // 7
      "10.0.0.1/8\n"              // 8
      "256.1.1.1\n"               // 9
      "1.2.3.4/\n"                // 10
      "1.2.3.4/08\n"              // 11
      "1.2.3.4 5.6.7.8\n"         // 12
      "2001:db8::/129\n"          // 13
      "fe80::1%eth0\n"            // 14
      "   # indented comment\n"   // 15
      "9.9.9.9";                  // 16, no final newline
  BannedList list;
  parse_banned_text(text, "pools.txt", list);
  std::vector<std::string> got;
  for (const auto& e : list.entries) got.push_back(e.network.text() + "@" + std::to_string(e.line));
  EXPECT_EQ(got, (std::vector<std::string>{"1.2.3.4@3", "5.6.7.0/24@4", "2001:db8:1::/48@5", "9.9.9.9@16"}));
  const std::vector<std::string> errors = {
      "pools.txt:6: not an IPv4 or IPv6 address: \"not-an-ip\"",
      "pools.txt:7: bad prefix length \"/33\" (0..32)",
      "pools.txt:8: host bits set (the network is 10.0.0.0/8)",
      "pools.txt:9: not an IPv4 or IPv6 address: \"256.1.1.1\"",
      "pools.txt:10: bad prefix length \"/\" (0..32)",
      "pools.txt:11: bad prefix length \"/08\" (0..32)",
      "pools.txt:12: not an IPv4 or IPv6 address: \"1.2.3.4 5.6.7.8\"",
      "pools.txt:13: bad prefix length \"/129\" (0..128)",
      "pools.txt:14: not an IPv4 or IPv6 address: \"fe80::1%eth0\"",
  };
  EXPECT_EQ(list.errors, errors);
  for (const auto& e : list.entries) EXPECT_EQ(e.file, "pools.txt");
}

TEST(ParseBannedText, BinaryGarbageGivesBoundedErrorsNotACrash) {
  std::string junk;
  for (int i = 0; i < 5000; ++i) junk.push_back(static_cast<char>((i * 131) & 0xff));
  junk += std::string(10000, 'x');
  BannedList list;
  parse_banned_text(junk, "junk", list);
  EXPECT_TRUE(list.entries.empty());
  ASSERT_FALSE(list.errors.empty());
  for (const auto& e : list.errors) EXPECT_LE(e.size(), 260u) << e.substr(0, 40);
}

TEST(BannedSet, FindsTheMostSpecificEntryInEitherFamily) {
  BannedList list;
  parse_banned_text("127.77.0.0/16\n127.77.1.0/24\n1.2.3.4\n2001:db8::/32\n2001:db8::5\n", "a.txt", list);
  BannedSet set(list);
  EXPECT_EQ(set.size(), 5u);
  struct Case {
    const char* destination;
    const char* matched;  // nullptr: not banned
  };
  const Case cases[] = {
      {"127.77.9.9", "127.77.0.0/16"},
      {"127.77.1.200", "127.77.1.0/24"},
      {"127.78.0.1", nullptr},
      {"1.2.3.4", "1.2.3.4"},
      {"1.2.3.5", nullptr},
      {"::ffff:1.2.3.4", "1.2.3.4"},  // a dual-stack socket connecting to 1.2.3.4
      {"::ffff:127.77.3.3", "127.77.0.0/16"},
      {"2001:db8::5", "2001:db8::5"},
      {"2001:db8:ffff::1", "2001:db8::/32"},
      {"2001:db9::1", nullptr},
      {"::1", nullptr},
  };
  for (const auto& c : cases) {
    const BannedEntry* hit = set.find(addr(c.destination));
    if (c.matched == nullptr) {
      EXPECT_EQ(hit, nullptr) << c.destination;
    } else {
      ASSERT_NE(hit, nullptr) << c.destination;
      EXPECT_EQ(hit->network.text(), c.matched) << c.destination;
      EXPECT_EQ(hit->file, "a.txt");
    }
  }
  EXPECT_EQ(BannedSet().find(addr("1.2.3.4")), nullptr);
}

TEST(BannedSet, DuplicatesKeepTheFirstFileAndLine) {
  BannedList list;
  parse_banned_text("1.2.3.4\n", "first.txt", list);
  parse_banned_text("\n1.2.3.4/32\n", "second.txt", list);
  BannedSet set(list);
  EXPECT_EQ(set.size(), 1u);
  ASSERT_NE(set.find(addr("1.2.3.4")), nullptr);
  EXPECT_EQ(set.find(addr("1.2.3.4"))->file, "first.txt");
}

TEST(BannedSet, ManyEntriesStillFindEveryOne) {
  BannedList list;
  std::string text;
  for (int i = 0; i < 20000; ++i)
    text += std::to_string(11 + i / 65536) + "." + std::to_string((i / 256) % 256) + "." + std::to_string(i % 256) +
            ".7\n";
  parse_banned_text(text, "big.txt", list);
  ASSERT_TRUE(list.errors.empty());
  BannedSet set(list);
  EXPECT_EQ(set.size(), 20000u);
  EXPECT_NE(set.find(addr("11.78.31.7")), nullptr);  // i = 19999
  EXPECT_EQ(set.find(addr("11.78.31.8")), nullptr);
}

TEST(IsPublic, ClassifiesTheDocumentedRanges) {
  struct Case {
    const char* address;
    bool is_public;
  };
  const Case cases[] = {
      {"8.8.8.8", true},
      {"1.1.1.1", true},
      {"100.63.255.255", true},
      {"100.64.0.1", false},  // CGNAT
      {"100.127.255.255", false},
      {"100.128.0.0", true},
      {"10.1.2.3", false},
      {"172.15.255.255", true},
      {"172.16.0.1", false},
      {"172.31.255.255", false},
      {"172.32.0.0", true},
      {"192.168.1.1", false},
      {"127.0.0.1", false},
      {"127.77.1.1", false},
      {"169.254.169.254", false},  // link-local (cloud metadata)
      {"0.0.0.0", false},
      {"0.1.2.3", false},
      {"192.0.0.8", false},
      {"192.0.2.1", false},
      {"198.51.100.7", false},
      {"203.0.113.9", false},
      {"198.18.0.1", false},
      {"198.19.255.255", false},
      {"198.20.0.0", true},
      {"224.0.0.1", false},  // multicast
      {"239.255.255.250", false},
      {"240.0.0.1", false},
      {"255.255.255.255", false},
      {"223.255.255.255", true},
      {"2606:4700:4700::1111", true},
      {"::", false},
      {"::1", false},
      {"fe80::1", false},
      {"febf::1", false},
      {"fec0::1", false},
      {"fc00::1", false},
      {"fd12:3456::1", false},
      {"ff02::1", false},
      {"2001:db8::1", false},
      {"100::1", false},
      {"::ffff:8.8.8.8", true},
      {"::ffff:10.0.0.1", false},
      {"64:ff9b::808:808", true},  // NAT64 of 8.8.8.8
      {"64:ff9b::a00:1", false},   // NAT64 of 10.0.0.1
  };
  for (const auto& c : cases) EXPECT_EQ(is_public(addr(c.address)), c.is_public) << c.address;
}

TEST(Address, FormatsEndpointsAndRejectsWrongSizes) {
  EXPECT_EQ(format_endpoint(addr("1.2.3.4"), 443), "1.2.3.4:443");
  EXPECT_EQ(format_endpoint(addr("2001:db8::1"), 443), "[2001:db8::1]:443");
  const uint8_t five[5] = {1, 2, 3, 4, 5};
  EXPECT_FALSE(address_from_bytes(five, 5));
  EXPECT_FALSE(address_from_bytes(five, 0));
  auto v4 = address_from_bytes(five, 4);
  ASSERT_TRUE(v4);
  EXPECT_EQ(format_address(*v4), "1.2.3.4");
  EXPECT_FALSE(parse_address(""));
  EXPECT_FALSE(parse_address(std::string(100, '1')));
}

TEST(ExpandGlobs, MatchesRegularFilesThroughSymlinksSortedAndWarnsOnNothing) {
  std::string dir = testing::make_temp_dir();
  std::filesystem::create_directories(dir + "/cm/..2024_v1");
  testing::write_file(dir + "/cm/..2024_v1/b.txt", "1.2.3.4\n");
  testing::write_file(dir + "/cm/..2024_v1/a.txt", "5.6.7.8\n");
  std::filesystem::create_directory_symlink("..2024_v1", dir + "/cm/..data");
  std::filesystem::create_symlink("..data/b.txt", dir + "/cm/b.txt");
  std::filesystem::create_symlink("..data/a.txt", dir + "/cm/a.txt");
  std::filesystem::create_directories(dir + "/cm/subdir");  // not a file
  auto got = expand_globs({dir + "/cm/*", dir + "/cm/a.txt", dir + "/nothing/*"});
  EXPECT_EQ(got.files, (std::vector<std::string>{dir + "/cm/a.txt", dir + "/cm/b.txt"}));
  EXPECT_EQ(got.warnings, (std::vector<std::string>{dir + "/nothing/*: matches no file"}));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cryptnono::enforcer
