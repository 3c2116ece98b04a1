//go:build !purego

#include "textflag.h"

// func nextAtLeastAVX2(a *float32, n int, t float32) int
// n is a positive multiple of 32. Returns the first i < n with !(a[i] < t) (NaN included, as
// Go's comparison has it: predicate 5, not-less-than, unordered true), or n.
TEXT ·nextAtLeastAVX2(SB), NOSPLIT, $0-32
	MOVQ         a+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS t+16(FP), Y15
	XORQ         BX, BX

loop:
	VMOVUPS (SI)(BX*4), Y0
	VMOVUPS 32(SI)(BX*4), Y1
	VMOVUPS 64(SI)(BX*4), Y2
	VMOVUPS 96(SI)(BX*4), Y3
	VCMPPS  $5, Y15, Y0, Y0
	VCMPPS  $5, Y15, Y1, Y1
	VCMPPS  $5, Y15, Y2, Y2
	VCMPPS  $5, Y15, Y3, Y3
	VORPS   Y1, Y0, Y4
	VORPS   Y3, Y2, Y5
	VORPS   Y5, Y4, Y4
	VPTEST  Y4, Y4
	JNZ     found
	ADDQ    $32, BX
	CMPQ    BX, CX
	JLT     loop
	JMP     done

found:
	VMOVMSKPS Y0, AX
	TESTL     AX, AX
	JNZ       lane
	ADDQ      $8, BX
	VMOVMSKPS Y1, AX
	TESTL     AX, AX
	JNZ       lane
	ADDQ      $8, BX
	VMOVMSKPS Y2, AX
	TESTL     AX, AX
	JNZ       lane
	ADDQ      $8, BX
	VMOVMSKPS Y3, AX

lane:
	BSFL AX, AX
	ADDQ AX, BX

done:
	VZEROUPPER
	MOVQ BX, ret+24(FP)
	RET
