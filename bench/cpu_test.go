//go:build !windows

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of the CPU times in
// /proc/PID/stat (100 on every architecture Go supports).
const clockTicks = 100

// procStat reads a process's parent and the CPU time (user + system) used
// by it and by the children it has waited for, from /proc (Linux only).
func procStat(pid int) (ppid int, cpu time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// "pid (comm) state ppid ... utime stime cutime cstime ...": comm may
	// hold spaces, so count fields after its closing parenthesis.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ppid, _ = strconv.Atoi(f[1])
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return ppid, time.Duration(ticks) * time.Second / clockTicks, nil
}

// treeCPU returns the CPU time used so far by a server process and all its
// descendants, living or already reaped: for Postfix, whose master forks
// smtpd, cleanup, qmgr and virtual, this counts every process of the
// instance; for a single-process server it is that process's own time.
// Sampled before and after a load, the difference is the load's CPU cost.
func treeCPU(root int) (time.Duration, error) {
	_, total, err := procStat(root)
	if err != nil {
		return 0, err
	}
	children := map[int][]int{}
	cpu := map[int]time.Duration{}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || pid == root {
			continue
		}
		ppid, c, err := procStat(pid)
		if err != nil {
			continue // gone meanwhile: its time is in its parent's cutime
		}
		children[ppid] = append(children[ppid], pid)
		cpu[pid] = c
	}
	stack := append([]int(nil), children[root]...)
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		total += cpu[pid]
		stack = append(stack, children[pid]...)
	}
	return total, nil
}
