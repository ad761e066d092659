# The inner loop of the `tlb-miss` workload, shared word for word by two programs:
# the ring-3 guest task (pv-guest/src/commands/bench/programs.rs) and the native run on the host
# (hv/src/bench/native.rs), which include this file. Same instructions, same data, so
# guest time / native time is the price of running it in the VM.
#
# A pointer chase over a working set: each step computes a pseudo-random offset
# (xorshift64), reads the 8-byte word there, and mixes the value read into the next
# offset. The next address depends on the last load, so the CPU cannot overlap the
# loads: every TLB miss and cache miss is paid in full.
#
# Calling convention (System V): rdi = base of the working set, rsi = offset mask
# (size - 8, for a power-of-two size), rdx = steps, rcx = seed (non-zero).
# Returns rax = the sum of the words read. Clobbers rcx, rdx, r8, r9.
# The caller writes the label in front; labels here are 71 and 72 so that they cannot
# meet the including program's own numeric labels.
    xor eax, eax
    test rdx, rdx
    jz 72f
71: mov r8, rcx
    shl r8, 13
    xor rcx, r8
    mov r8, rcx
    shr r8, 7
    xor rcx, r8
    mov r8, rcx
    shl r8, 17
    xor rcx, r8
    mov r8, rcx
    and r8, rsi
    mov r9, qword ptr [rdi + r8]
    add rax, r9
    add rcx, r9
    dec rdx
    jnz 71b
72: ret
