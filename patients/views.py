from django.shortcuts import redirect


def home(request):
    return redirect("patients:list" if request.user.is_authenticated else "login")
