//go:build wasip1

package actor

import (
	"runtime"
	"unsafe"
)

// The waPC host functions (module "wapc"); see docs/abi.md.

//go:wasmimport wapc __guest_request
func wapcGuestRequest(opPtr, msgPtr unsafe.Pointer)

//go:wasmimport wapc __guest_response
func wapcGuestResponse(ptr unsafe.Pointer, n uint32)

//go:wasmimport wapc __guest_error
func wapcGuestError(ptr unsafe.Pointer, n uint32)

//go:wasmimport wapc __host_call
func wapcHostCall(bdPtr unsafe.Pointer, bdLen uint32, nsPtr unsafe.Pointer, nsLen uint32, opPtr unsafe.Pointer, opLen uint32, ptr unsafe.Pointer, n uint32) uint32

//go:wasmimport wapc __host_response_len
func wapcHostResponseLen() uint32

//go:wasmimport wapc __host_response
func wapcHostResponse(ptr unsafe.Pointer)

//go:wasmimport wapc __host_error_len
func wapcHostErrorLen() uint32

//go:wasmimport wapc __host_error
func wapcHostError(ptr unsafe.Pointer)

//go:wasmimport wapc __console_log
func wapcConsoleLog(ptr unsafe.Pointer, n uint32)

// inCall guards against a second __guest_call while one runs (the host never
// does that: one instance serves one call at a time).
var inCall bool

// wapcGuestCall is the waPC entry point: the host calls it once per request,
// with the lengths of the operation name and the payload. It fetches both with
// __guest_request, runs the handler, and answers with __guest_response
// (returns 1) or __guest_error (returns 0).
//
//go:wasmexport __guest_call
func wapcGuestCall(opLen, msgLen int32) int32 {
	if opLen < 0 || msgLen < 0 {
		setGuestError("__guest_call: negative length")
		return 0
	}
	if inCall {
		setGuestError("__guest_call: called again while a call is in progress")
		return 0
	}
	inCall = true
	defer func() { inCall = false }()

	op := make([]byte, opLen)
	msg := make([]byte, msgLen)
	wapcGuestRequest(bytesPtr(op), bytesPtr(msg))
	runtime.KeepAlive(op)
	runtime.KeepAlive(msg)

	reply, err := guestCall(string(op), msg)
	if err != nil {
		setGuestError(err.Error())
		return 0
	}
	wapcGuestResponse(bytesPtr(reply), uint32(len(reply)))
	runtime.KeepAlive(reply)
	return 1
}

func setGuestError(message string) {
	wapcGuestError(stringPtr(message), uint32(len(message)))
	runtime.KeepAlive(message)
}

func hostCall(binding, namespace, operation string, payload []byte) ([]byte, error) {
	ok := wapcHostCall(
		stringPtr(binding), uint32(len(binding)),
		stringPtr(namespace), uint32(len(namespace)),
		stringPtr(operation), uint32(len(operation)),
		bytesPtr(payload), uint32(len(payload)),
	)
	runtime.KeepAlive(binding)
	runtime.KeepAlive(namespace)
	runtime.KeepAlive(operation)
	runtime.KeepAlive(payload)
	if ok == 1 {
		reply := make([]byte, wapcHostResponseLen())
		wapcHostResponse(bytesPtr(reply))
		return reply, nil
	}
	message := make([]byte, wapcHostErrorLen())
	wapcHostError(bytesPtr(message))
	return nil, &HostError{Binding: binding, Namespace: namespace, Operation: operation, Message: string(message)}
}

func consoleLog(message string) {
	wapcConsoleLog(stringPtr(message), uint32(len(message)))
	runtime.KeepAlive(message)
}

func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func stringPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }
