// Container id, runtime and pod UID from cgroup names as each runtime and cgroup driver
// writes them (paths as seen on real nodes; ids and UIDs made up).
#include <string>

#include <gtest/gtest.h>

#include "cryptnono/exporter/container.h"

namespace cryptnono::exporter {
namespace {

const std::string kId = "9b1f4c2e7a5d3b8f0e6c1a4d7b2e5f8c3a6d9b0e1f4c7a2d5b8e3f6c9a0d1b4e";
const std::string kUid = "d2ed6416-812f-413b-ba53-e62d11646809";
const std::string kUidSystemd = "d2ed6416_812f_413b_ba53_e62d11646809";

struct Case {
  const char* what;
  std::string cgroup;
  std::string runtime;
  std::string container_type;
  std::string container_id;
  std::string pod_uid;
};

TEST(ParseCgroup, KnowsEveryRuntimeAndDriver) {
  const Case cases[] = {
      {"containerd, systemd driver, burstable",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice/cri-containerd-" + kId +
           ".scope",
       "containerd", "cri", kId, kUid},
      {"containerd, systemd driver, as the collector sends it (last four components)",
       "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice/cri-containerd-" + kId +
           ".scope",
       "containerd", "cri", kId, kUid},
      {"containerd, systemd driver, truncated to three components",
       "kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidSystemd + ".slice/cri-containerd-" + kId + ".scope",
       "containerd", "cri", kId, kUid},
      {"containerd, systemd driver, guaranteed QoS (no QoS slice)",
       "/kubepods.slice/kubepods-pod" + kUidSystemd + ".slice/cri-containerd-" + kId + ".scope", "containerd", "cri",
       kId, kUid},
      {"containerd or CRI-O, cgroupfs driver, burstable", "/kubepods/burstable/pod" + kUid + "/" + kId, "", "cri", kId,
       kUid},
      {"cgroupfs driver, guaranteed QoS", "/kubepods/pod" + kUid + "/" + kId, "", "cri", kId, kUid},
      {"CRI-O, systemd driver",
       "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidSystemd + ".slice/crio-" + kId +
           ".scope",
       "cri-o", "cri", kId, kUid},
      {"CRI-O, cgroupfs driver", "/kubepods/besteffort/pod" + kUid + "/crio-" + kId, "cri-o", "cri", kId, kUid},
      {"CRI-O conmon is not the container",
       "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidSystemd + ".slice/crio-conmon-" +
           kId + ".scope",
       "", "", "", kUid},
      {"Docker, systemd driver", "/system.slice/docker-" + kId + ".scope", "docker", "docker", kId, ""},
      {"Docker, cgroupfs driver", "/docker/" + kId, "docker", "docker", kId, ""},
      {"Docker under Kubernetes (cri-dockerd), systemd driver",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice/docker-" + kId +
           ".scope",
       "docker", "docker", kId, kUid},
      {"podman", "/machine.slice/libpod-" + kId + ".scope", "podman", "podman", kId, ""},
      {"podman conmon is not the container", "/machine.slice/libpod-conmon-" + kId + ".scope", "", "", "", ""},
      {"a nested cgroup inside a container maps to the container",
       "kubepods-burstable-pod" + kUidSystemd + ".slice/cri-containerd-" + kId + ".scope/init.scope", "containerd",
       "cri", kId, kUid},
      {"a static pod's UID is a 32-hex config hash",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6a0c0f5e0d7bd1e3e2a0b0c0d0e0f001.slice/"
       "cri-containerd-" + kId + ".scope",
       "containerd", "cri", kId, "6a0c0f5e0d7bd1e3e2a0b0c0d0e0f001"},
      {"the pod slice itself is not a container",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice", "", "", "", kUid},
      {"containerd outside Kubernetes (namespace default)", "/default/" + kId, "", "", kId, ""},
  };
  for (const auto& c : cases) {
    auto ref = parse_cgroup(c.cgroup);
    EXPECT_EQ(ref.runtime, c.runtime) << c.what;
    EXPECT_EQ(ref.container_type, c.container_type) << c.what;
    EXPECT_EQ(ref.container_id, c.container_id) << c.what;
    EXPECT_EQ(ref.pod_uid, c.pod_uid) << c.what;
  }
}

TEST(ParseCgroup, HostProcessesAreNotContainers) {
  for (std::string cgroup : {"/user.slice/user-1000.slice/session-3.scope", "/system.slice/sshd.service",
                             "/system.slice/podman.service", "/init.scope", "/", "", "kubepods.slice"}) {
    auto ref = parse_cgroup(cgroup);
    EXPECT_EQ(ref.container_id, "") << cgroup;
    EXPECT_EQ(ref.container_type, "") << cgroup;
    EXPECT_EQ(ref.pod_uid, "") << cgroup;
  }
}

TEST(ParseCgroup, RejectsAlmostIdsAndSurvivesGarbage) {
  std::string upper = kId;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (std::string cgroup : {"/docker/" + kId.substr(1), "/docker/" + kId + "0", "/docker/" + upper,
                             std::string("/system.slice/cri-containerd-.scope"), std::string("////"),
                             "/kubepods/burstable/podnot-a-uid/" + kId.substr(2),
                             std::string("/kubepods/pod") + std::string(36, '_') + "/x"}) {
    auto ref = parse_cgroup(cgroup);
    EXPECT_EQ(ref.container_id, "") << cgroup;
  }
  EXPECT_EQ(parse_cgroup("/kubepods/pod" + std::string(36, '_') + "/" + kId).pod_uid, "");
  EXPECT_EQ(parse_cgroup("/kubepods/pod" + kUid.substr(0, 35) + "g/" + kId).pod_uid, "");
  std::string huge(1 << 20, '/');
  for (size_t i = 0; i < huge.size(); i += 3) huge[i] = static_cast<char>(i * 31);
  auto ref = parse_cgroup(huge);  // must just return
  EXPECT_LE(ref.container_id.size(), 64u);
}

TEST(NoopEnricher, GivesEmptyLabelsAndImage) {
  NoopEnricher enricher;
  auto e = enricher.enrich(parse_cgroup("/docker/" + kId));
  EXPECT_TRUE(e.labels.empty());
  EXPECT_EQ(e.image, "");
}

}  // namespace
}  // namespace cryptnono::exporter
