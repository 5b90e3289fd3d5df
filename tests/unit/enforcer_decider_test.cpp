// The decision logic with a fake Killer: no privileges, no processes.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include "cryptnono/enforcer/decider.h"
#include "cryptnono/enforcer/text.h"
#include "enforcer_test_util.h"

namespace cryptnono::enforcer {
namespace {

using namespace std::string_literals;

using testing::FakeKiller;

class DeciderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ExecwhackerConfig c;
    c.banned.push_back({"XMRig-Token", "t.json", 0, 1});
    c.allowed.push_back({"/usr/bin/allowed ", "t.json", 0, 2});
    auto m = Matcher::build(c);
    ASSERT_TRUE(m);
    matcher_ = std::move(*m);
  }

  // Builds the event in a message the test keeps, and views it as the enforcer does.
  ExecView event(const testing::EventSpec& spec) {
    message_ = std::make_unique<capnp::MallocMessageBuilder>();
    auto ev = message_->initRoot<schema::ExecEvent>();
    testing::fill_event(ev, spec);
    return view_of(ev.asReader());
  }

  static testing::EventSpec spec(std::string filename, std::string argv) {
    testing::EventSpec s;
    s.pid = 4242;
    s.start_boot_ns = 123'456'789;
    s.pidfs_ino = 987'654;
    s.filename = std::move(filename);
    s.argv = std::move(argv);
    return s;
  }

  FakeKiller killer_;
  std::unique_ptr<Matcher> matcher_;
  std::unique_ptr<capnp::MallocMessageBuilder> message_;
};

TEST_F(DeciderTest, NoMatchTouchesNoProcess) {
  Decider d(killer_, false);
  const auto& v = d.decide(event(spec("/bin/echo", "echo\0hello\0"s)), *matcher_);
  EXPECT_EQ(v.action, schema::Action::NO_MATCH);
  EXPECT_EQ(killer_.calls.opens, 0);
  EXPECT_GT(v.decided_boot_ns, 0u);
}

TEST_F(DeciderTest, MatchKillsTheVerifiedProcess) {
  Decider d(killer_, false);
  const auto& v = d.decide(event(spec("/usr/bin/sh", "sh\0-c\0sleep 1 && echo XMRIG-token\0"s)), *matcher_);
  EXPECT_EQ(v.action, schema::Action::KILLED);
  EXPECT_EQ(v.matched, "xmrig-token");
  EXPECT_EQ(d.cmdline(), "/usr/bin/sh -c 'sleep 1 && echo xmrig-token'");
  EXPECT_EQ(killer_.calls.pid, 4242);
  EXPECT_EQ(killer_.calls.start, 123'456'789u);
  EXPECT_EQ(killer_.calls.pidfs_ino, 987'654u);  // the process is verified by it
  EXPECT_EQ(killer_.calls.kills, 1);
  EXPECT_GE(v.killed_boot_ns, v.decided_boot_ns);
  EXPECT_FALSE(v.cmdline_from_proc);
}

TEST_F(DeciderTest, ExecEventsJudgeTheFilenameNotArgv0) {
  Decider d(killer_, false);
  // argv[0] is replaced by the filename: a banned argv[0] alone does not count...
  EXPECT_EQ(d.decide(event(spec("/bin/sleep", "xmrig-token\0" "60\0"s)), *matcher_).action, schema::Action::NO_MATCH);
  // ...while for sweeps argv as /proc shows it is the command line.
  auto s = spec("", "xmrig-token\0" "60\0"s);
  s.source = schema::Source::SCAN;
  EXPECT_EQ(d.decide(event(s), *matcher_).action, schema::Action::KILLED);
  EXPECT_EQ(d.cmdline(), "xmrig-token 60");
}

TEST_F(DeciderTest, AllowedPatternSparesWithoutTouchingTheProcess) {
  Decider d(killer_, false);
  const auto& v = d.decide(event(spec("/usr/bin/allowed", "allowed\0xmrig-token\0"s)), *matcher_);
  EXPECT_EQ(v.action, schema::Action::SPARED);
  EXPECT_EQ(v.allowed_by, "/usr/bin/allowed ");
  EXPECT_EQ(v.matched, "xmrig-token");
  EXPECT_EQ(killer_.calls.opens, 0);
}

TEST_F(DeciderTest, DryRunVerifiesButDoesNotKill) {
  Decider d(killer_, true);
  const auto& v = d.decide(event(spec("/bin/x", "x\0xmrig-token\0"s)), *matcher_);
  EXPECT_EQ(v.action, schema::Action::WOULD_KILL);
  EXPECT_EQ(killer_.calls.opens, 1);
  EXPECT_EQ(killer_.calls.kills, 0);
  EXPECT_EQ(v.killed_boot_ns, 0u);
}

TEST_F(DeciderTest, IdentityOutcomesMapToActions) {
  struct Case {
    KillOutcome open;
    schema::Action action;
  };
  const Case cases[] = {
      {{KillStatus::kExited, "process exited"}, schema::Action::MISSED_KILL},
      {{KillStatus::kReused, "pid reused (start time differs)"}, schema::Action::MISSED_KILL},
      {{KillStatus::kProtected, "protected: pid 1"}, schema::Action::SPARED},
      {{KillStatus::kError, "pidfd_open(4242): Operation not permitted"}, schema::Action::ERROR},
  };
  for (const auto& c : cases) {
    killer_.open_outcome = c.open;
    Decider d(killer_, false);
    const auto& v = d.decide(event(spec("/bin/x", "x\0xmrig-token\0"s)), *matcher_);
    EXPECT_EQ(v.action, c.action) << c.open.reason;
    EXPECT_EQ(v.reason, c.open.reason);
    EXPECT_EQ(v.killed_boot_ns, 0u);
  }
  EXPECT_EQ(killer_.calls.kills, 0);
}

TEST_F(DeciderTest, ProcessThatExitsBeforeTheSignalIsAMissedKill) {
  killer_.kill_outcome = {KillStatus::kExited, "process exited"};
  Decider d(killer_, false);
  const auto& v = d.decide(event(spec("/bin/x", "x\0xmrig-token\0"s)), *matcher_);
  EXPECT_EQ(v.action, schema::Action::MISSED_KILL);
  EXPECT_EQ(v.reason, "process exited");
}

TEST_F(DeciderTest, TruncatedArgvIsJudgedOnTheFullCmdlineFromProc) {
  killer_.proc_argv = "x\0--a\0--b\0XMRig-Token\0"s;
  auto s = spec("/bin/x", "x\0--a\0--"s);
  s.truncated = true;
  s.full_length = 22;
  Decider d(killer_, false);
  const auto& v = d.decide(event(s), *matcher_);
  EXPECT_EQ(v.action, schema::Action::KILLED);
  EXPECT_TRUE(v.cmdline_from_proc);
  EXPECT_EQ(d.cmdline(), "/bin/x --a --b xmrig-token");
  EXPECT_EQ(killer_.calls.opens, 1);  // one identity check serves the read and the kill
  EXPECT_EQ(killer_.calls.reads, 1);
}

TEST_F(DeciderTest, TruncatedEventWhoseProcessIsGoneIsJudgedOnWhatItCarries) {
  killer_.open_outcome = {KillStatus::kExited, "process exited"};
  auto s = spec("/bin/x", "x\0--a\0"s);
  s.truncated = true;
  Decider d(killer_, false);
  const auto& v = d.decide(event(s), *matcher_);
  EXPECT_EQ(v.action, schema::Action::NO_MATCH);
  EXPECT_FALSE(v.cmdline_from_proc);
  EXPECT_NE(v.reason.find("process exited"), std::string::npos);

  auto s2 = spec("/bin/x", "x\0xmrig-token\0"s);
  s2.truncated = true;
  EXPECT_EQ(d.decide(event(s2), *matcher_).action, schema::Action::MISSED_KILL);
}

TEST_F(DeciderTest, EventsCarryingHostileBytesAreJudgedNotCrashedOn) {
  Decider d(killer_, false);
  std::string argv = "x\0"s;
  for (int i = 0; i < 256; ++i) argv.push_back(static_cast<char>(i));
  argv += "\0'\"\n\xff\xfe xmrig-token\0"s;
  const auto& v = d.decide(event(spec("/bin/\xff", argv)), *matcher_);
  EXPECT_EQ(v.action, schema::Action::KILLED);
}

TEST_F(DeciderTest, CopyEventLeavesArgvOutWhenAsked) {
  auto view = event(spec("/bin/x", "x\0y\0"s));
  capnp::MallocMessageBuilder out;
  auto ev = out.initRoot<schema::ExecEvent>();
  copy_event(view, ev, false);
  EXPECT_EQ(ev.getPid(), 4242u);
  EXPECT_EQ(ev.getArgv().size(), 0u);
  EXPECT_EQ(ev.getFilename().size(), 6u);
  EXPECT_EQ(std::string(ev.getCgroupName().cStr()), "test/cgroup");
  copy_event(view, out.initRoot<schema::ExecEvent>(), true);
  EXPECT_EQ(out.getRoot<schema::ExecEvent>().getArgv().size(), 4u);
}

}  // namespace
}  // namespace cryptnono::enforcer
