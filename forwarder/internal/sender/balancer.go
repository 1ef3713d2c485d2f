package sender

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
)

// BalancerName is a round robin that rotates: each new stream goes to the
// next ready replica in address order, whatever happened in between.
//
// gRPC's round_robin starts at a random replica every time any connection
// changes state, and aged connections change state all the time; with one
// stream per forwarder that makes a replica's share a lottery (8 forwarders
// on 4 replicas: from 14% to 40% over 20 s). Rotating, every forwarder visits
// every replica in turn, so over a few stream ages each carries its share.
// Use it with {"loadBalancingConfig":[{"podlogs_rotate":{}}]}.
const BalancerName = "podlogs_rotate"

func init() { balancer.Register(rotateBuilder{}) }

type rotateBuilder struct{}

func (rotateBuilder) Name() string { return BalancerName }

func (rotateBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	r := &rotateCC{ClientConn: cc}
	r.next.Store(rand.Uint32()) // forwarders do not all start on the same replica
	return &rotateBalancer{Balancer: endpointsharding.NewBalancer(r, opts, balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})}
}

type rotateBalancer struct{ balancer.Balancer }

func (b *rotateBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	// As round_robin: lets pick_first children report health.
	s.ResolverState = pickfirst.EnableHealthListener(s.ResolverState)
	return b.Balancer.UpdateClientConnState(s)
}

// rotateCC replaces endpointsharding's picker, whose position is reset at
// random on every update, by one whose position survives updates.
type rotateCC struct {
	balancer.ClientConn
	next atomic.Uint32 // position in the ready list; shared by successive pickers
}

func (c *rotateCC) UpdateState(s balancer.State) {
	if s.ConnectivityState == connectivity.Ready {
		var ready []balancer.Picker
		children := endpointsharding.ChildStatesFromPicker(s.Picker)
		slices.SortFunc(children, func(a, b endpointsharding.ChildState) int {
			return cmp.Compare(key(a), key(b))
		})
		for _, ch := range children {
			if ch.State.ConnectivityState == connectivity.Ready {
				ready = append(ready, ch.State.Picker)
			}
		}
		if len(ready) > 0 {
			s.Picker = &rotatePicker{ready: ready, next: &c.next}
		}
	}
	c.ClientConn.UpdateState(s)
}

func key(c endpointsharding.ChildState) string {
	if len(c.Endpoint.Addresses) == 0 {
		return ""
	}
	return c.Endpoint.Addresses[0].Addr
}

type rotatePicker struct {
	ready []balancer.Picker
	next  *atomic.Uint32
}

func (p *rotatePicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	return p.ready[p.next.Add(1)%uint32(len(p.ready))].Pick(info)
}
