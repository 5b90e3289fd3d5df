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

}  // namespace
}  // namespace cryptnono::collector
