// Package deploy holds how podlogs is deployed, and the tests that keep it working:
//
//   - helm/podlogs: the Helm chart (forwarder DaemonSet, aggregator Deployment, headless
//     Service, HPA, PDB, RBAC, optional NATS JetStream cluster); its ci/ folder holds the
//     documented value sets the tests render.
//   - docker/Dockerfile: the images (forwarder, aggregator, loggen).
//   - dashboards/pod-logs.ndjson: the OpenSearch Dashboards saved objects of the pod logs
//     dashboard.
//
// The tests render the chart with the pinned helm, validate every manifest with the pinned
// kubeconform against schemas made offline (tools/kubeschema), decode them strictly into the
// k8s.io/api types, and assert what matters; they load ../docker-compose.yaml with compose-go;
// and they run the dashboard's queries against a real OpenSearch node.
package deploy
