import pytest

from client.testing import FakeAPIServer


@pytest.fixture
def fake():
    return FakeAPIServer()


@pytest.fixture
async def aclient(fake):
    client = fake.async_client()
    yield client
    await client.aclose()

