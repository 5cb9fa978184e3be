#!/usr/bin/python3
"""A client not written here: Python grpcio against dsinfer-server (DESIGN §7).

Generates Python stubs from proto/ with grpc_tools.protoc into a scratch directory, starts
the real server on a free loopback port with the CPU backend, and calls Generate,
GenerateStream, GetModelInfo and the standard grpc.health.v1 Health service.

usage: python_client_test.py SERVER_BIN MODEL_DIR PROTO_DIR WORK_DIR
"""
import os
import subprocess
import sys
import time


def main():
    server_bin, model_dir, proto_dir, work_dir = sys.argv[1:5]
    # The standard health.proto, filed under health_check/ (see the file for why).
    health_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "proto")
    stubs = os.path.join(work_dir, "py_stubs")
    os.makedirs(stubs, exist_ok=True)
    subprocess.check_call([sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}",
                           f"--python_out={stubs}", f"--grpc_python_out={stubs}",
                           os.path.join(proto_dir, "dsinfer/v1/inference.proto")])
    subprocess.check_call([sys.executable, "-m", "grpc_tools.protoc", f"-I{health_dir}",
                           f"--python_out={stubs}", f"--grpc_python_out={stubs}",
                           os.path.join(health_dir, "health_check/health.proto")])
    sys.path.insert(0, stubs)
    import grpc
    from health_check import health_pb2, health_pb2_grpc
    from dsinfer.v1 import inference_pb2, inference_pb2_grpc

    port_file = os.path.join(work_dir, "py_server.port")
    if os.path.exists(port_file):
        os.remove(port_file)
    server = subprocess.Popen([server_bin, "--model", model_dir, "--listen", "127.0.0.1:0",
                               "--port-file", port_file, "--api-key", "py-secret"])
    try:
        deadline = time.time() + 30
        while not os.path.exists(port_file):
            assert server.poll() is None, "server exited early"
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
        port = int(open(port_file).read())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = inference_pb2_grpc.InferenceStub(channel)
        auth = (("authorization", "Bearer py-secret"),)

        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, reply

        request = inference_pb2.GenerateRequest(
            token_ids=inference_pb2.TokenIds(ids=[1, 17, 42, 99, 7]),
            stopping=inference_pb2.StoppingCriteria(max_new_tokens=12, ignore_eos=True))
        unary = stub.Generate(request, metadata=auth, timeout=30)
        assert len(unary.token_ids) == 12, unary
        assert unary.finish_reason == inference_pb2.FINISH_REASON_LENGTH, unary
        assert unary.usage.prompt_tokens == 5 and unary.usage.completion_tokens == 12, unary

        streamed, final = [], None
        for message in stub.GenerateStream(request, metadata=auth, timeout=30):
            streamed.extend(message.token_ids)
            if message.finish_reason != inference_pb2.FINISH_REASON_UNSPECIFIED:
                final = message
        assert streamed == list(unary.token_ids), (streamed, list(unary.token_ids))
        assert final is not None and final.usage.completion_tokens == 12, final

        try:
            stub.Generate(request, timeout=10)
            raise AssertionError("Generate without an API key succeeded")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e

        bad = inference_pb2.GenerateRequest(token_ids=inference_pb2.TokenIds(ids=[1, 100000]))
        try:
            stub.Generate(bad, metadata=auth, timeout=10)
            raise AssertionError("token id >= vocab accepted")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
            assert "vocabulary" in e.details(), e.details()

        info = stub.GetModelInfo(inference_pb2.GetModelInfoRequest(), metadata=auth, timeout=5)
        assert info.vocab_size == 512 and info.kv.blocks_in_use == 0, info
        print("python grpcio client: OK")
    finally:
        server.terminate()
        code = server.wait(timeout=30)
        assert code == 0, f"server exited {code} on SIGTERM"


if __name__ == "__main__":
    main()
