#include "cryptnono/enforcer/detector.h"

#include "cryptnono/clock.h"

namespace cryptnono::enforcer {

namespace {

// The same mapping execwhacker's Decider uses: gone or recycled is a missed kill, a
// protection rule spares, anything else is an error.
void set_from(const KillOutcome& outcome, KillResult& r) {
  switch (outcome.status) {
    case KillStatus::kOk:
      return;
    case KillStatus::kExited:
    case KillStatus::kReused:
      r.action = schema::Action::MISSED_KILL;
      break;
    case KillStatus::kProtected:
      r.action = schema::Action::SPARED;
      break;
    case KillStatus::kError:
      r.action = schema::Action::ERROR;
      break;
  }
  r.reason = outcome.reason;
}

}  // namespace

KillResult kill_verified(Killer& killer, pid_t pid, uint64_t start_boot_ns, bool dry_run, std::string* argv_out) {
  KillResult r;
  Opened opened = killer.open(pid, start_boot_ns);
  if (opened.outcome.status != KillStatus::kOk) {
    set_from(opened.outcome, r);
    return r;
  }
  if (argv_out != nullptr) {
    // Before the signal: a killed process's /proc/<pid>/cmdline reads empty.
    auto read = opened.target->read_cmdline(*argv_out);
    r.have_argv = read.status == KillStatus::kOk;
    if (read.status == KillStatus::kExited) {
      set_from(read, r);
      return r;
    }
  }
  if (dry_run) {
    r.action = schema::Action::WOULD_KILL;
    return r;
  }
  auto sent = opened.target->kill();
  if (sent.status == KillStatus::kOk) {
    r.killed_boot_ns = boot_ns();
    r.action = schema::Action::KILLED;
    r.exited_boot_ns = opened.target->wait_exited();
    return r;
  }
  set_from(sent, r);
  return r;
}

void write_identity(const Identity& id, const std::string* argv, schema::ExecEvent::Builder out) {
  out.setSource(schema::Source::BPF);
  out.setPid(static_cast<uint32_t>(id.process()));
  out.setTgid(id.tgid);
  out.setPpid(id.ppid);
  out.setUid(id.uid);
  out.setStartBootNs(id.start_boot_ns);
  out.setExecBootNs(0);
  out.setComm(id.comm);
  if (argv != nullptr) {
    out.setArgv(kj::arrayPtr(reinterpret_cast<const kj::byte*>(argv->data()), argv->size()));
    out.setArgvFullLength(static_cast<uint32_t>(argv->size()));
  }
  out.setCgroupId(id.cgroup_id);
  out.setCgroupName(id.cgroup_name);
  out.setCpu(id.cpu);
}

}  // namespace cryptnono::enforcer
