package podpath

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	f := func(rel string, want Ref) {
		t.Helper()
		got, err := Parse(rel)
		if err != nil {
			t.Fatalf("Parse(%q): %v", rel, err)
		}
		if got != want {
			t.Fatalf("Parse(%q) = %+v, want %+v", rel, got, want)
		}
	}
	f("ui_ui-5dcbd7c4b8-x2vqz_3f0e6c5a-0d3b-4a8e-9a51-6f1c2b7d9e10/ui/0.log", Ref{
		Namespace: "ui", Pod: "ui-5dcbd7c4b8-x2vqz", PodUID: "3f0e6c5a-0d3b-4a8e-9a51-6f1c2b7d9e10", Container: "ui",
	})
	f("kube-system_kube-proxy-abcde_0a1b/kube-proxy/12.log", Ref{
		Namespace: "kube-system", Pod: "kube-proxy-abcde", PodUID: "0a1b", Container: "kube-proxy", Restart: 12,
	})
	f("ui_ui-1_u/ui/0.log.20231107-020510", Ref{
		Namespace: "ui", Pod: "ui-1", PodUID: "u", Container: "ui", Rotated: true,
	})
	// Static pods have a hash for a uid and may have dots in their name.
	f("kube-system_etcd-ip-10-0-0-1.ec2.internal_6f0c9c7d1e2f/etcd/0.log", Ref{
		Namespace: "kube-system", Pod: "etcd-ip-10-0-0-1.ec2.internal", PodUID: "6f0c9c7d1e2f", Container: "etcd",
	})
}

func TestParseRejects(t *testing.T) {
	f := func(rel string) {
		t.Helper()
		if _, err := Parse(rel); !errors.Is(err, ErrNotPodLog) {
			t.Fatalf("Parse(%q) error = %v, want ErrNotPodLog", rel, err)
		}
	}
	f("")
	f("0.log")
	f("ns_pod_uid/0.log")
	f("nspoduid/c/0.log")
	f("ns_pod/c/0.log")
	f("ns_pod_uid_x/c/0.log")
	f("ns_pod_uid/c/x.log")
	f("ns_pod_uid/c/0.txt")
	f("ns_pod_uid/c/0.logx")
	f("ns_pod_uid/c/d/0.log")
	f("_pod_uid/c/0.log")
	f("ns_pod_uid//0.log")
	f("ns_pod_uid/c/-1.log")
}

func TestContainerDir(t *testing.T) {
	if got := ContainerDir("ns_p_u/c/0.log.20231107-020510"); got != "ns_p_u/c" {
		t.Fatalf("ContainerDir = %q", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("ui_ui-5dcbd7c4b8-x2vqz_3f0e6c5a-0d3b-4a8e-9a51-6f1c2b7d9e10/ui/0.log")
	f.Add("ns_p_u/c/0.log.20231107-020510")
	f.Add("ns_p_u/c/0.log.gz")
	f.Fuzz(func(t *testing.T, rel string) {
		ref, err := Parse(rel)
		if err != nil {
			return
		}
		if ref.Namespace == "" || ref.Pod == "" || ref.PodUID == "" || ref.Container == "" || ref.Restart < 0 {
			t.Fatalf("Parse(%q) accepted an incomplete ref %+v", rel, ref)
		}
	})
}
