// Package nlbimport turns a Windows NLB cluster's configuration, as an
// administrator exports it with the NetworkLoadBalancingClusters
// PowerShell module, into an lb.toml that does what the NLB cluster did,
// and says what it could not carry over.
//
// The input is the JSON that ExportScript writes: the cluster
// (Get-NlbCluster), its virtual IP addresses (Get-NlbClusterVip), its
// nodes with their dedicated IP addresses (Get-NlbClusterNode,
// Get-NlbClusterNodeDip) and every node's view of every port rule
// (Get-NlbClusterNode | Get-NlbClusterPortRule), whose properties are
// those Microsoft documents for Format-List (learn.microsoft.com,
// powershell/module/networkloadbalancingclusters: get-nlbclusterportrule,
// example 3; get-nlbclusternode; get-nlbclustervip;
// get-nlbclusternodedip). Word values (Protocol, FilteringMode, Affinity,
// PortState) are the enum names Add-NlbClusterPortRule documents. These
// formats were taken from that documentation only: no real NLB export
// was available to check them against.
package nlbimport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// ExportScript is what an administrator runs on one NLB host to produce
// the input. Every value is written as text, so the JSON does not depend
// on how a PowerShell version serializes enums and IP addresses.
const ExportScript = `Import-Module NetworkLoadBalancingClusters
$c = Get-NlbCluster
$n = @(Get-NlbClusterNode -InputObject $c)
[pscustomobject]@{
  Cluster   = [pscustomobject]@{ Name = "$($c.Name)"; IPAddress = "$($c.IPAddress)"; Mode = "$($c.Mode)" }
  Vips      = @(Get-NlbClusterVip -InputObject $c | ForEach-Object { "$($_.IPAddress)" })
  Nodes     = @($n | ForEach-Object { [pscustomobject]@{ Name = "$($_.Name)"; HostID = "$($_.HostID)"
                Dips = @(Get-NlbClusterNodeDip -InputObject $_ | ForEach-Object { "$($_.IPAddress)" }) } })
  PortRules = @($n | Get-NlbClusterPortRule | ForEach-Object { [pscustomobject]@{
                NodeName = "$($_.NodeName)"; VirtualIPAddress = "$($_.VirtualIPAddress)"
                StartPort = "$($_.StartPort)"; EndPort = "$($_.EndPort)"; Protocol = "$($_.Protocol)"
                FilteringMode = "$($_.FilteringMode)"; Affinity = "$($_.Affinity)"; PortState = "$($_.PortState)"
                EqualLoad = "$($_.EqualLoad)"; LoadWeight = "$($_.LoadWeight)"; Priority = "$($_.Priority)"
                Timeout = "$($_.Timeout)" } })
} | ConvertTo-Json -Depth 5 | Out-File -Encoding utf8 nlb.json`

// Export is the cluster as exported.
type Export struct {
	Cluster   Cluster    `json:"Cluster"`
	Vips      []text     `json:"Vips"`
	Nodes     []Node     `json:"Nodes"`
	PortRules []PortRule `json:"PortRules"`
}

// Cluster is Get-NlbCluster's object.
type Cluster struct {
	Name      text `json:"Name"`
	IPAddress text `json:"IPAddress"`
	Mode      text `json:"Mode"` // Unicast, Multicast or IgmpMulticast
}

// Node is a host of the cluster with its dedicated addresses.
type Node struct {
	Name   text   `json:"Name"`
	HostID text   `json:"HostID"`
	Dips   []text `json:"Dips"`
}

// PortRule is one node's view of one port rule.
type PortRule struct {
	NodeName         text `json:"NodeName"`
	VirtualIPAddress text `json:"VirtualIPAddress"` // 255.255.255.255 or "All": every cluster address
	StartPort        text `json:"StartPort"`
	EndPort          text `json:"EndPort"`
	Protocol         text `json:"Protocol"`      // Tcp, Udp or Both
	FilteringMode    text `json:"FilteringMode"` // Multiple, Single or Disabled
	Affinity         text `json:"Affinity"`      // None, Single or Network
	PortState        text `json:"PortState"`     // Enabled or Disabled
	EqualLoad        text `json:"EqualLoad"`
	LoadWeight       text `json:"LoadWeight"` // 0-100, for Multiple
	Priority         text `json:"Priority"`   // handling priority, for Single: lowest handles all
	Timeout          text `json:"Timeout"`    // extended affinity, minutes
}

// text is a value written as text. A number or true/false is taken as
// its text; an IP address object as ConvertTo-Json writes one without
// the export script ({"IPAddressToString": ...}) as that string.
type text string

func (t *text) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*t = text(strings.TrimSpace(s))
		return nil
	}
	var ip struct {
		IPAddressToString string `json:"IPAddressToString"`
	}
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		if err := json.Unmarshal(b, &ip); err != nil || ip.IPAddressToString == "" {
			return fmt.Errorf("an object where a value belongs (export with the script in `stickylb import-nlb --help`)")
		}
		*t = text(ip.IPAddressToString)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		*t = ""
		return nil
	}
	*t = text(bytes.TrimSpace(b))
	return nil
}

// maxInput bounds what Read accepts: an NLB cluster has at most 32
// hosts and 32 port rules.
const maxInput = 4 << 20

// Read decodes an export. It takes UTF-8 (with or without the byte order
// mark Out-File -Encoding utf8 writes) and UTF-16 (what Windows
// PowerShell 5.1's > writes). The error names what is missing.
func Read(b []byte) (*Export, error) {
	if len(b) > maxInput {
		return nil, fmt.Errorf("%d bytes: an NLB export is far smaller (at most %d)", len(b), maxInput)
	}
	b = toUTF8(b)
	var e Export
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		var se *json.SyntaxError
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("not JSON: the file ends in the middle (export with the script in `stickylb import-nlb --help`)")
		}
		if errors.As(err, &se) {
			return nil, fmt.Errorf("not JSON at byte %d: %v (export with the script in `stickylb import-nlb --help`)", se.Offset, err)
		}
		return nil, fmt.Errorf("not an NLB export: %w (export with the script in `stickylb import-nlb --help`)", err)
	}
	return &e, e.complete()
}

// complete says what a usable export lacks, all of it at once.
func (e *Export) complete() error {
	var errs []error
	if e.Cluster.IPAddress == "" && len(e.Vips) == 0 {
		errs = append(errs, errors.New("no cluster IP address: Cluster.IPAddress and Vips are both empty"))
	}
	if len(e.Nodes) == 0 {
		errs = append(errs, errors.New("no nodes: Nodes is empty (Get-NlbClusterNode)"))
	}
	if len(e.PortRules) == 0 {
		errs = append(errs, errors.New("no port rules: PortRules is empty (Get-NlbClusterNode | Get-NlbClusterPortRule)"))
	}
	for i, n := range e.Nodes {
		if n.Name == "" {
			errs = append(errs, fmt.Errorf("node %d has no Name", i+1))
		} else if len(n.Dips) == 0 {
			errs = append(errs, fmt.Errorf("node %s has no dedicated IP address (Dips, from Get-NlbClusterNodeDip): stickylb reaches each host at it", show(string(n.Name))))
		}
	}
	for i, r := range e.PortRules {
		for key, v := range map[string]text{"NodeName": r.NodeName, "StartPort": r.StartPort, "EndPort": r.EndPort,
			"Protocol": r.Protocol, "FilteringMode": r.FilteringMode} {
			if v == "" {
				errs = append(errs, fmt.Errorf("port rule entry %d has no %s", i+1, key))
			}
		}
	}
	return errors.Join(errs...)
}

// toUTF8 strips a UTF-8 byte order mark and decodes UTF-16 with one.
func toUTF8(b []byte) []byte {
	switch {
	case bytes.HasPrefix(b, []byte{0xef, 0xbb, 0xbf}):
		return b[3:]
	case len(b) >= 2 && (b[0] == 0xff && b[1] == 0xfe || b[0] == 0xfe && b[1] == 0xff):
		big := b[0] == 0xfe
		u := make([]uint16, 0, len(b)/2)
		for i := 2; i+1 < len(b); i += 2 {
			if big {
				u = append(u, uint16(b[i])<<8|uint16(b[i+1]))
			} else {
				u = append(u, uint16(b[i+1])<<8|uint16(b[i]))
			}
		}
		return []byte(string(utf16.Decode(u)))
	}
	return b
}
