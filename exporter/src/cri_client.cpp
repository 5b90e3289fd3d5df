// The CRI client: runtime.v1 RuntimeService/ImageService over gRPC on a unix socket.
#include <grpcpp/grpcpp.h>

#include "cri.grpc.pb.h"
#include "cryptnono/exporter/runtime_client.h"

namespace cryptnono::exporter {

bool add_label(std::map<std::string, std::string>& labels, std::string_view key, std::string_view value) {
  if (labels.size() >= kMaxLabels || key.empty() || key.size() > kMaxLabelKeyBytes) return false;
  if (value.size() > kMaxLabelValueBytes) value = value.substr(0, kMaxLabelValueBytes);
  labels.insert_or_assign(std::string(key), std::string(value));
  return true;
}

bool is_image_id(std::string_view image) {
  if (image.rfind("sha256:", 0) == 0) return true;
  if (image.size() != 64) return false;
  for (char c : image) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<std::string> unix_socket_path(std::string_view endpoint) {
  std::string_view path = endpoint;
  if (path.rfind("unix://", 0) == 0) path.remove_prefix(7);
  if (path.empty() || path[0] != '/') {
    return fail("'" + std::string(endpoint) + "' is not a unix socket (unix:///path or /path)");
  }
  if (path.size() >= 108) return fail("socket path '" + std::string(path) + "' is too long for a unix socket");
  return std::string(path);
}

namespace {

constexpr std::string_view kPodName = "io.kubernetes.pod.name";
constexpr std::string_view kPodNamespace = "io.kubernetes.pod.namespace";
constexpr std::string_view kPodUid = "io.kubernetes.pod.uid";
constexpr std::string_view kContainerName = "io.kubernetes.container.name";

LookupError error_of(const grpc::Status& status, std::string_view call) {
  std::string kind = "error";
  std::string code = "code " + std::to_string(static_cast<int>(status.error_code()));
  switch (status.error_code()) {
    case grpc::StatusCode::NOT_FOUND:
      kind = "not_found";
      code = "NotFound";
      break;
    case grpc::StatusCode::UNAVAILABLE:
      kind = "unavailable";
      code = "Unavailable";
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      kind = "timeout";
      code = "DeadlineExceeded";
      break;
    default:
      break;
  }
  std::string message = "cri " + std::string(call) + ": " + code + ": " + status.error_message();
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  if (message.size() > 300) message.resize(300);
  return {kind, message};
}

class CriClient final : public RuntimeClient {
 public:
  explicit CriClient(const std::string& socket_path) {
    grpc::ChannelArguments args;
    // gRPC's default reconnect backoff grows to 120 s: after a runtime restart every
    // lookup would fail fast for minutes. Keep it short; connecting to a unix socket is cheap.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    // Answers are small; a runtime (or something squatting on its socket) sending more is refused.
    args.SetMaxReceiveMessageSize(4 << 20);
    auto channel = grpc::CreateCustomChannel("unix://" + socket_path, grpc::InsecureChannelCredentials(), args);
    runtime_ = runtime::v1::RuntimeService::NewStub(channel);
    images_ = runtime::v1::ImageService::NewStub(channel);
  }

  std::string_view kind() const override { return "cri"; }

  LookupResult<ContainerInfo> inspect(const std::string& container_id, std::chrono::milliseconds timeout) override {
    auto deadline = std::chrono::system_clock::now() + timeout;
    auto context = [&] {
      auto ctx = std::make_unique<grpc::ClientContext>();
      ctx->set_deadline(deadline);
      return ctx;
    };
    runtime::v1::ContainerStatusRequest req;
    req.set_container_id(container_id);
    runtime::v1::ContainerStatusResponse resp;
    if (auto st = runtime_->ContainerStatus(context().get(), req, &resp); !st.ok()) {
      return tl::unexpected(error_of(st, "ContainerStatus"));
    }
    const auto& status = resp.status();
    ContainerInfo info;
    for (const auto& [key, value] : status.labels()) add_label(info.labels, key, value);
    if (!info.labels.count(std::string(kContainerName)) && !status.metadata().name().empty()) {
      add_label(info.labels, kContainerName, status.metadata().name());
    }
    // The kubelet labels every container with its pod; a runtime used without the
    // kubelet's labels still knows the sandbox, whose metadata names the pod.
    if (!info.labels.count(std::string(kPodName)) || !info.labels.count(std::string(kPodNamespace))) {
      add_pod_from_sandbox(container_id, context, info);
    }
    info.image = image_name(status, context);
    if (info.image.size() > kMaxImageBytes) info.image.resize(kMaxImageBytes);
    return info;
  }

 private:
  template <class MakeContext>
  void add_pod_from_sandbox(const std::string& container_id, MakeContext& context, ContainerInfo& info) {
    runtime::v1::ListContainersRequest list;
    list.mutable_filter()->set_id(container_id);
    runtime::v1::ListContainersResponse listed;
    if (!runtime_->ListContainers(context().get(), list, &listed).ok() || listed.containers().empty()) return;
    runtime::v1::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(listed.containers(0).pod_sandbox_id());
    runtime::v1::PodSandboxStatusResponse resp;
    if (!runtime_->PodSandboxStatus(context().get(), req, &resp).ok()) return;
    const auto& md = resp.status().metadata();
    if (!md.name().empty()) add_label(info.labels, kPodName, md.name());
    if (!md.namespace_().empty()) add_label(info.labels, kPodNamespace, md.namespace_());
    if (!md.uid().empty()) add_label(info.labels, kPodUid, md.uid());
  }

  // containerd reports the name the pod asked for; CRI-O (and containerd for an image
  // pulled by digest) may report an id: then ask the image service for its tags.
  template <class MakeContext>
  std::string image_name(const runtime::v1::ContainerStatus& status, MakeContext& context) {
    const std::string& image = status.image().image();
    if (!image.empty() && !is_image_id(image)) return image;
    std::string id = !image.empty() ? image : status.image_ref();
    if (!id.empty()) {
      runtime::v1::ImageStatusRequest req;
      req.mutable_image()->set_image(id);
      runtime::v1::ImageStatusResponse resp;
      if (images_->ImageStatus(context().get(), req, &resp).ok()) {
        for (const auto& tag : resp.image().repo_tags()) {
          if (!tag.empty()) return tag;
        }
        for (const auto& digest : resp.image().repo_digests()) {
          if (!digest.empty()) return digest;
        }
      }
    }
    return !status.image_ref().empty() ? status.image_ref() : image;
  }

  std::unique_ptr<runtime::v1::RuntimeService::Stub> runtime_;
  std::unique_ptr<runtime::v1::ImageService::Stub> images_;
};

}  // namespace

std::unique_ptr<RuntimeClient> make_cri_client(const std::string& socket_path) {
  return std::make_unique<CriClient>(socket_path);
}

}  // namespace cryptnono::exporter
