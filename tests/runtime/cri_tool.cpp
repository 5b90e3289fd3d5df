// cri_tool: the few CRI calls the runtime tier needs to make a pod the way the kubelet
// would (sandbox + container, Kubernetes labels, cgroupfs parent), through our own
// generated client of exporter/proto/cri.proto. crictl is not a Debian package.
//
//   cri_tool [--privileged] SOCKET run-pod NAME NAMESPACE UID   -> sandbox id
//   cri_tool [--privileged] SOCKET create SANDBOX NAME NAMESPACE UID CONTAINER IMAGE -- CMD ARGS...  -> container id
//     (--privileged: as a dind pod runs, so that its dockerd may create device cgroups)
//   cri_tool SOCKET start CONTAINER_ID
//   cri_tool SOCKET status CONTAINER_ID                         -> JSON: labels, image, image_ref, state
//   cri_tool SOCKET remove-pod SANDBOX_ID                       (stops, then removes)
// Exit 0 on success, 1 with the gRPC error on stderr otherwise.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "cri.grpc.pb.h"

namespace {

using runtime::v1::ImageService;
using runtime::v1::RuntimeService;

std::unique_ptr<grpc::ClientContext> context(int seconds = 30) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

int check(const grpc::Status& status, const char* what) {
  if (status.ok()) return 0;
  std::fprintf(stderr, "cri_tool: %s: %s (code %d)\n", what, status.error_message().c_str(),
               static_cast<int>(status.error_code()));
  return 1;
}

// What the kubelet puts on a sandbox: pod identity labels, the pod's cgroup as parent
// (cgroupfs driver, BestEffort QoS), and here host network so that no CNI is needed.
runtime::v1::PodSandboxConfig sandbox_config(const std::string& name, const std::string& ns, const std::string& uid,
                                             bool privileged) {
  runtime::v1::PodSandboxConfig config;
  auto* md = config.mutable_metadata();
  md->set_name(name);
  md->set_namespace_(ns);
  md->set_uid(uid);
  md->set_attempt(0);
  // No hostname: with the host network there is no private UTS namespace to set it in.

  config.set_log_directory("/tmp/cryptnono-cri-logs/" + ns + "_" + name + "_" + uid);
  (*config.mutable_labels())["io.kubernetes.pod.name"] = name;
  (*config.mutable_labels())["io.kubernetes.pod.namespace"] = ns;
  (*config.mutable_labels())["io.kubernetes.pod.uid"] = uid;
  auto* linux = config.mutable_linux();
  linux->set_cgroup_parent("/kubepods/besteffort/pod" + uid);
  linux->mutable_security_context()->set_privileged(privileged);
  auto* nso = linux->mutable_security_context()->mutable_namespace_options();
  nso->set_network(runtime::v1::NODE);
  nso->set_pid(runtime::v1::CONTAINER);
  nso->set_ipc(runtime::v1::POD);
  return config;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  bool privileged = !args.empty() && args[0] == "--privileged";
  if (privileged) args.erase(args.begin());
  if (args.size() < 2) {
    std::fprintf(stderr, "usage: cri_tool SOCKET COMMAND ARGS...\n");
    return 2;
  }
  auto channel = grpc::CreateChannel(args[0], grpc::InsecureChannelCredentials());
  auto rt = RuntimeService::NewStub(channel);
  auto images = ImageService::NewStub(channel);
  const std::string& cmd = args[1];

  if (cmd == "run-pod" && args.size() == 5) {
    runtime::v1::RunPodSandboxRequest req;
    *req.mutable_config() = sandbox_config(args[2], args[3], args[4], privileged);
    runtime::v1::RunPodSandboxResponse resp;
    if (check(rt->RunPodSandbox(context(60).get(), req, &resp), "RunPodSandbox")) return 1;
    std::printf("%s\n", resp.pod_sandbox_id().c_str());
    return 0;
  }
  if (cmd == "create" && args.size() >= 10 && args[8] == "--") {
    runtime::v1::CreateContainerRequest req;
    req.set_pod_sandbox_id(args[2]);
    *req.mutable_sandbox_config() = sandbox_config(args[3], args[4], args[5], privileged);
    auto* config = req.mutable_config();
    config->mutable_metadata()->set_name(args[6]);
    config->mutable_image()->set_image(args[7]);
    config->add_command(args[9]);
    for (size_t i = 10; i < args.size(); ++i) config->add_args(args[i]);
    // The kubelet's four container labels (pkg/kubelet/types/labels.go).
    (*config->mutable_labels())["io.kubernetes.container.name"] = args[6];
    (*config->mutable_labels())["io.kubernetes.pod.name"] = args[3];
    (*config->mutable_labels())["io.kubernetes.pod.namespace"] = args[4];
    (*config->mutable_labels())["io.kubernetes.pod.uid"] = args[5];
    config->set_log_path(args[6] + "/0.log");
    config->mutable_linux()->mutable_security_context()->set_privileged(privileged);
    auto* nso = config->mutable_linux()->mutable_security_context()->mutable_namespace_options();
    nso->set_network(runtime::v1::NODE);
    nso->set_pid(runtime::v1::CONTAINER);
    nso->set_ipc(runtime::v1::POD);
    runtime::v1::CreateContainerResponse resp;
    if (check(rt->CreateContainer(context(60).get(), req, &resp), "CreateContainer")) return 1;
    std::printf("%s\n", resp.container_id().c_str());
    return 0;
  }
  if (cmd == "start" && args.size() == 3) {
    runtime::v1::StartContainerRequest req;
    req.set_container_id(args[2]);
    runtime::v1::StartContainerResponse resp;
    return check(rt->StartContainer(context(60).get(), req, &resp), "StartContainer");
  }
  if (cmd == "status" && args.size() == 3) {
    runtime::v1::ContainerStatusRequest req;
    req.set_container_id(args[2]);
    runtime::v1::ContainerStatusResponse resp;
    if (check(rt->ContainerStatus(context().get(), req, &resp), "ContainerStatus")) return 1;
    nlohmann::json out;
    out["id"] = resp.status().id();
    out["name"] = resp.status().metadata().name();
    out["state"] = static_cast<int>(resp.status().state());
    out["image"] = resp.status().image().image();
    out["image_ref"] = resp.status().image_ref();
    out["labels"] = nlohmann::json::object();
    for (const auto& [k, v] : resp.status().labels()) out["labels"][k] = v;
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  if (cmd == "remove-pod" && args.size() == 3) {
    runtime::v1::StopPodSandboxRequest stop;
    stop.set_pod_sandbox_id(args[2]);
    runtime::v1::StopPodSandboxResponse stopped;
    if (check(rt->StopPodSandbox(context(60).get(), stop, &stopped), "StopPodSandbox")) return 1;
    runtime::v1::RemovePodSandboxRequest rm;
    rm.set_pod_sandbox_id(args[2]);
    runtime::v1::RemovePodSandboxResponse removed;
    return check(rt->RemovePodSandbox(context(60).get(), rm, &removed), "RemovePodSandbox");
  }
  std::fprintf(stderr, "cri_tool: unknown command or wrong arguments: %s\n", cmd.c_str());
  return 2;
}
