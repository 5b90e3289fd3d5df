// Ring-buffer records: length validation (a record is never trusted past its size) and
// the conversion of both event shapes into schema ExecEvents.
#include <cstring>
#include <string>
#include <vector>

#include <capnp/message.h>
#include <gtest/gtest.h>

#include "cryptnono/collector/events.h"

namespace cryptnono::collector {
namespace {

using namespace std::string_literals;

std::vector<uint64_t> make_record(const exec_event& h, const std::string& cg, const std::string& fn,
                                  const std::string& args, size_t extra = 0) {
  size_t size = sizeof h + cg.size() + fn.size() + args.size() + extra;
  std::vector<uint64_t> words((size + 7) / 8);
  auto* p = reinterpret_cast<char*>(words.data());
  std::memcpy(p, &h, sizeof h);
  std::memcpy(p + sizeof h, cg.data(), cg.size());
  std::memcpy(p + sizeof h + cg.size(), fn.data(), fn.size());
  std::memcpy(p + sizeof h + cg.size() + fn.size(), args.data(), args.size());
  return words;
}

exec_event header(const std::string& cg, const std::string& fn, const std::string& args) {
  exec_event h{};
  h.start_boot_ns = 111;
  h.exec_boot_ns = 222;
  h.cgroup_id = 333;
  h.pid = 10;
  h.tgid = 10;
  h.ppid = 9;
  h.uid = 1000;
  h.gid = 100;
  h.mnt_ns = 4026531841u;
  h.pid_ns = 4026531836u;
  h.cpu = 1;
  h.pidfs_ino = 8'123'456;
  h.flags = EXEC_FLAG_ARGS_TRUNCATED;
  h.args_full_len = 70000;
  h.cgroup_len = static_cast<uint32_t>(cg.size());
  h.filename_len = static_cast<uint32_t>(fn.size());
  h.args_len = static_cast<uint32_t>(args.size());
  std::memcpy(h.comm, "xmrig", 5);
  return h;
}

TEST(ExecRecord, SplitsTheBodyByTheHeaderLengths) {
  std::string cg = "kubepods.slice/pod.slice/cri-containerd-ab.scope", fn = "/usr/bin/xmrig",
              args = "xmrig\0--url\0pool:3333\0\xff\xfe"s;
  auto h = header(cg, fn, args);
  auto words = make_record(h, cg, fn, args);
  size_t size = sizeof h + cg.size() + fn.size() + args.size();
  auto rec = parse_exec_record(words.data(), size);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->cgroup_name, cg);
  EXPECT_EQ(rec->filename, fn);
  EXPECT_EQ(rec->argv, args);
  EXPECT_EQ(rec->comm(), "xmrig");
  EXPECT_TRUE(rec->truncated());
}

TEST(ExecRecord, RejectsRecordsShorterThanTheirLengths) {
  std::string cg = "a", fn = "/bin/x", args = "x\0y\0"s;
  auto h = header(cg, fn, args);
  auto words = make_record(h, cg, fn, args);
  size_t size = sizeof h + cg.size() + fn.size() + args.size();
  EXPECT_FALSE(parse_exec_record(words.data(), size - 1).has_value());
  EXPECT_FALSE(parse_exec_record(words.data(), sizeof h - 1).has_value());
  EXPECT_FALSE(parse_exec_record(nullptr, size).has_value());
  // Lengths that would wrap a 32-bit sum.
  h.args_len = 0xffffffffu;
  h.filename_len = 2;
  words = make_record(h, cg, fn, args);
  EXPECT_FALSE(parse_exec_record(words.data(), size).has_value());
  // A comm without NUL stops at the array's end.
  h = header(cg, fn, args);
  std::memset(h.comm, 'c', sizeof h.comm);
  words = make_record(h, cg, fn, args);
  auto rec = parse_exec_record(words.data(), size);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->comm(), std::string(16, 'c'));
}

TEST(ExecRecord, FillsEveryExecEventField) {
  std::string cg = "a/b", fn = "/bin/sh", args = "sh\0-c\0echo 'hi'\n\0"s;
  auto h = header(cg, fn, args);
  auto words = make_record(h, cg, fn, args);
  auto rec = parse_exec_record(words.data(), sizeof h + cg.size() + fn.size() + args.size());
  ASSERT_TRUE(rec.has_value());
  capnp::MallocMessageBuilder mb;
  auto ev = mb.initRoot<schema::ExecEvent>();
  fill_exec_event(ev, *rec);
  auto r = ev.asReader();
  EXPECT_EQ(r.getSource(), schema::Source::BPF);
  EXPECT_EQ(r.getPid(), 10u);
  EXPECT_EQ(r.getTgid(), 10u);
  EXPECT_EQ(r.getPpid(), 9u);
  EXPECT_EQ(r.getUid(), 1000u);
  EXPECT_EQ(r.getGid(), 100u);
  EXPECT_EQ(r.getStartBootNs(), 111u);
  EXPECT_EQ(r.getExecBootNs(), 222u);
  EXPECT_EQ(std::string(r.getComm().cStr()), "xmrig");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r.getFilename().begin()), r.getFilename().size()), fn);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r.getArgv().begin()), r.getArgv().size()), args);
  EXPECT_TRUE(r.getArgvTruncated());
  EXPECT_EQ(r.getArgvFullLength(), 70000u);
  EXPECT_EQ(r.getCgroupId(), 333u);
  EXPECT_EQ(std::string(r.getCgroupName().cStr()), cg);
  EXPECT_EQ(r.getMntNs(), 4026531841u);
  EXPECT_EQ(r.getPidNs(), 4026531836u);
  EXPECT_EQ(r.getCpu(), 1u);
  EXPECT_EQ(r.getPidfsIno(), 8'123'456u);
}

TEST(ScannedProcess, FillsAScanEvent) {
  ScannedProcess p;
  p.pid = 77;
  p.ppid = 1;
  p.uid = 5;
  p.gid = 6;
  p.start_boot_ns = 123'000'000;
  p.comm = "miner";
  p.filename = "/tmp/miner";
  p.argv = "miner\0\xff\0"s;
  p.argv_truncated = true;
  p.argv_full_length = 8;
  p.cgroup_name = "x/y";
  capnp::MallocMessageBuilder mb;
  auto ev = mb.initRoot<schema::ExecEvent>();
  fill_exec_event(ev, p);
  auto r = ev.asReader();
  EXPECT_EQ(r.getSource(), schema::Source::SCAN);
  EXPECT_EQ(r.getPid(), 77u);
  EXPECT_EQ(r.getTgid(), 77u);
  EXPECT_EQ(r.getExecBootNs(), 0u);
  EXPECT_EQ(r.getStartBootNs(), 123'000'000u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r.getArgv().begin()), r.getArgv().size()), p.argv);
  EXPECT_TRUE(r.getArgvTruncated());
  EXPECT_EQ(std::string(r.getCgroupName().cStr()), "x/y");
}

// ---- monero (fpu) and connect records -------------------------------------------------

task_ident ident(const std::string& cg) {
  task_ident t{};
  t.start_boot_ns = 5'000'000'000ull;
  t.cgroup_id = 4242;
  t.pid = 301;
  t.tgid = 300;
  t.ppid = 1;
  t.uid = 1000;
  t.cpu = 1;
  t.cgroup_len = static_cast<uint32_t>(cg.size());
  std::memcpy(t.comm, "xmrig", 5);
  return t;
}

template <class Header>
std::vector<uint64_t> make_task_record(const Header& h, const std::string& cg) {
  std::vector<uint64_t> words((sizeof h + cg.size() + 7) / 8);
  auto* p = reinterpret_cast<char*>(words.data());
  std::memcpy(p, &h, sizeof h);
  std::memcpy(p + sizeof h, cg.data(), cg.size());
  return words;
}

fpu_event fpu_header(const std::string& cg) {
  fpu_event h{};
  h.task = ident(cg);
  h.first_boot_ns = 6'000'000'000ull;
  h.event_boot_ns = 6'100'000'000ull;
  h.mxcsr = 0x5fa0;
  h.count = 64;
  h.threshold = 64;
  return h;
}

TEST(FpuRecord, FillsEveryFpuEventField) {
  std::string cg = "kubepods.slice/p.slice/cri-containerd-ab.scope";
  auto h = fpu_header(cg);
  auto words = make_task_record(h, cg);
  auto rec = parse_fpu_record(words.data(), sizeof h + cg.size());
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->cgroup_name, cg);
  EXPECT_EQ(rec->comm(), "xmrig");
  capnp::MallocMessageBuilder mb;
  auto ev = mb.initRoot<schema::FpuEvent>();
  fill_fpu_event(ev, *rec);
  auto r = ev.asReader();
  EXPECT_EQ(r.getPid(), 301u);
  EXPECT_EQ(r.getTgid(), 300u);
  EXPECT_EQ(r.getPpid(), 1u);
  EXPECT_EQ(r.getUid(), 1000u);
  EXPECT_EQ(r.getStartBootNs(), 5'000'000'000ull);
  EXPECT_EQ(std::string(r.getComm().cStr()), "xmrig");
  EXPECT_EQ(r.getCgroupId(), 4242u);
  EXPECT_EQ(std::string(r.getCgroupName().cStr()), cg);
  EXPECT_EQ(r.getMxcsr(), 0x5fa0u);
  EXPECT_EQ(r.getCount(), 64u);
  EXPECT_EQ(r.getThreshold(), 64u);
  EXPECT_EQ(r.getFirstBootNs(), 6'000'000'000ull);
  EXPECT_EQ(r.getEventBootNs(), 6'100'000'000ull);
  EXPECT_EQ(r.getCpu(), 1u);
}

TEST(FpuRecord, RejectsWhatTheProbeCannotWrite) {
  std::string cg = "a/b";
  auto h = fpu_header(cg);
  auto words = make_task_record(h, cg);
  const size_t size = sizeof h + cg.size();
  EXPECT_TRUE(parse_fpu_record(words.data(), size).has_value());
  EXPECT_FALSE(parse_fpu_record(words.data(), size - 1).has_value()) << "cgroup name cut";
  EXPECT_FALSE(parse_fpu_record(words.data(), sizeof h - 1).has_value()) << "header cut";
  EXPECT_FALSE(parse_fpu_record(nullptr, size).has_value());
  struct Case {
    const char* what;
    void (*mutate)(fpu_event&);
  };
  const Case cases[] = {
      {"cgroup length at the cap", [](fpu_event& e) { e.task.cgroup_len = TASK_CGROUP_CAP; }},
      {"cgroup length that wraps", [](fpu_event& e) { e.task.cgroup_len = 0xffffffffu; }},
      {"count below the threshold", [](fpu_event& e) { e.count = 63; }},
      {"threshold zero", [](fpu_event& e) { e.threshold = 0; }},
  };
  for (const auto& c : cases) {
    auto bad = fpu_header(cg);
    c.mutate(bad);
    auto w = make_task_record(bad, std::string(2048, 'x'));
    EXPECT_FALSE(parse_fpu_record(w.data(), sizeof bad + 2048).has_value()) << c.what;
  }
}

connect_event connect_header(const std::string& cg, uint32_t family) {
  connect_event h{};
  h.task = ident(cg);
  h.event_boot_ns = 7'000'000'000ull;
  h.family = family;
  h.dport = 3333;
  h.sport = 0;
  if (family == CONNECT_AF_INET) {
    const uint8_t d[4] = {203, 0, 113, 7}, s[4] = {10, 0, 0, 2};
    std::memcpy(h.daddr, d, 4);
    std::memcpy(h.saddr, s, 4);
  } else {
    for (int i = 0; i < 16; ++i) h.daddr[i] = static_cast<uint8_t>(0x20 + i);
    h.saddr[15] = 1;
  }
  return h;
}

std::string data_of(capnp::Data::Reader d) { return std::string(reinterpret_cast<const char*>(d.begin()), d.size()); }

TEST(ConnectRecord, FillsAnIpv4ConnectEventWithFourAddressBytes) {
  std::string cg = "kubepods.slice/x";
  auto h = connect_header(cg, CONNECT_AF_INET);
  auto words = make_task_record(h, cg);
  auto rec = parse_connect_record(words.data(), sizeof h + cg.size());
  ASSERT_TRUE(rec.has_value());
  capnp::MallocMessageBuilder mb;
  auto ev = mb.initRoot<schema::ConnectEvent>();
  fill_connect_event(ev, *rec);
  auto r = ev.asReader();
  EXPECT_EQ(r.getPid(), 301u);
  EXPECT_EQ(r.getTgid(), 300u);
  EXPECT_EQ(r.getPpid(), 1u);
  EXPECT_EQ(r.getUid(), 1000u);
  EXPECT_EQ(r.getStartBootNs(), 5'000'000'000ull);
  EXPECT_EQ(std::string(r.getComm().cStr()), "xmrig");
  EXPECT_EQ(r.getCgroupId(), 4242u);
  EXPECT_EQ(std::string(r.getCgroupName().cStr()), cg);
  EXPECT_EQ(r.getFamily(), schema::AddressFamily::IPV4);
  EXPECT_EQ(data_of(r.getDestination()), "\xcb\x00\x71\x07"s);  // 203.0.113.7, network order
  EXPECT_EQ(r.getDestinationPort(), 3333u);
  EXPECT_EQ(data_of(r.getSourceAddress()), "\x0a\x00\x00\x02"s);
  EXPECT_EQ(r.getSourcePort(), 0u);
  EXPECT_EQ(r.getEventBootNs(), 7'000'000'000ull);
  EXPECT_EQ(r.getCpu(), 1u);
}

TEST(ConnectRecord, FillsAnIpv6ConnectEventWithSixteenAddressBytes) {
  auto h = connect_header("", CONNECT_AF_INET6);
  auto words = make_task_record(h, "");
  auto rec = parse_connect_record(words.data(), sizeof h);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->cgroup_name, "");
  capnp::MallocMessageBuilder mb;
  auto ev = mb.initRoot<schema::ConnectEvent>();
  fill_connect_event(ev, *rec);
  auto r = ev.asReader();
  EXPECT_EQ(r.getFamily(), schema::AddressFamily::IPV6);
  ASSERT_EQ(r.getDestination().size(), 16u);
  EXPECT_EQ(std::memcmp(r.getDestination().begin(), h.daddr, 16), 0);
  ASSERT_EQ(r.getSourceAddress().size(), 16u);
  EXPECT_EQ(r.getSourceAddress()[15], 1u);
}

TEST(ConnectRecord, RejectsWhatTheProbeCannotWrite) {
  const std::string cg = "c";
  struct Case {
    const char* what;
    void (*mutate)(connect_event&);
  };
  const Case cases[] = {
      {"unknown family", [](connect_event& e) { e.family = 1; }},
      {"port above 65535", [](connect_event& e) { e.dport = 70000; }},
      {"source port above 65535", [](connect_event& e) { e.sport = 0x10000; }},
      {"cgroup length past the record", [](connect_event& e) { e.task.cgroup_len = 2; }},
  };
  for (const auto& c : cases) {
    auto bad = connect_header(cg, CONNECT_AF_INET);
    c.mutate(bad);
    auto w = make_task_record(bad, cg);
    EXPECT_FALSE(parse_connect_record(w.data(), sizeof bad + cg.size()).has_value()) << c.what;
  }
  auto ok = connect_header(cg, CONNECT_AF_INET6);
  auto w = make_task_record(ok, cg);
  EXPECT_TRUE(parse_connect_record(w.data(), sizeof ok + cg.size()).has_value());
  EXPECT_FALSE(parse_connect_record(w.data(), sizeof ok - 8).has_value());
}

}  // namespace
}  // namespace cryptnono::collector
